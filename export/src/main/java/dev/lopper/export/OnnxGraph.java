package dev.lopper.export;

import ai.onnx.proto.OnnxMl.AttributeProto;
import ai.onnx.proto.OnnxMl.GraphProto;
import ai.onnx.proto.OnnxMl.NodeProto;
import ai.onnx.proto.OnnxMl.StringStringEntryProto;
import ai.onnx.proto.OnnxMl.TensorProto;
import ai.onnx.proto.OnnxMl.TensorShapeProto;
import ai.onnx.proto.OnnxMl.TypeProto;
import ai.onnx.proto.OnnxMl.ValueInfoProto;
import com.google.protobuf.ByteString;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A small builder for an ONNX graph: inputs, outputs, initializers and nodes with generated output names. Weights
 * go into the protobuf as raw little-endian bytes, or, in external-data mode, into one side file
 * ({@code TensorProto.data_location = EXTERNAL}, 4 KiB-aligned so ONNX Runtime can map them).
 */
final class OnnxGraph implements AutoCloseable {
    static final int FLOAT = TensorProto.DataType.FLOAT_VALUE;
    static final int INT64 = TensorProto.DataType.INT64_VALUE;
    static final int FLOAT16 = TensorProto.DataType.FLOAT16_VALUE;
    static final int BFLOAT16 = TensorProto.DataType.BFLOAT16_VALUE;
    private static final long ALIGN = 4096;

    private final GraphProto.Builder graph = GraphProto.newBuilder();
    private final FileChannel external;
    private final String externalName;
    private int counter;

    /**
     * @param externalData the side file for weights, or null to embed them in the model file
     */
    OnnxGraph(String name, Path externalData) throws IOException {
        graph.setName(name);
        if (externalData != null) {
            external = FileChannel.open(externalData, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
            externalName = externalData.getFileName().toString();
        } else {
            external = null;
            externalName = null;
        }
    }

    GraphProto build() {
        return graph.build();
    }

    /** A graph input or output type: elemType with dims, each a Long (fixed) or a String (symbolic). */
    static ValueInfoProto valueInfo(String name, int elemType, Object... dims) {
        TensorShapeProto.Builder shape = TensorShapeProto.newBuilder();
        for (Object d : dims) {
            TensorShapeProto.Dimension.Builder dim = shape.addDimBuilder();
            if (d instanceof String s) {
                dim.setDimParam(s);
            } else {
                dim.setDimValue(((Number) d).longValue());
            }
        }
        return ValueInfoProto.newBuilder().setName(name)
                .setType(TypeProto.newBuilder().setTensorType(TypeProto.Tensor.newBuilder().setElemType(elemType).setShape(shape)))
                .build();
    }

    void input(String name, int elemType, Object... dims) {
        graph.addInput(valueInfo(name, elemType, dims));
    }

    void output(String name, int elemType, Object... dims) {
        graph.addOutput(valueInfo(name, elemType, dims));
    }

    /** A weight from little-endian fp32 bytes (position..limit of {@code data}); returns its name. */
    String weight(String name, ByteBuffer data, long... dims) throws IOException {
        return weight(name, FLOAT, data, dims);
    }

    /** A weight of element type {@code elemType} from its little-endian bytes; returns its name. */
    String weight(String name, int elemType, ByteBuffer data, long... dims) throws IOException {
        TensorProto.Builder t = TensorProto.newBuilder().setName(name).setDataType(elemType);
        for (long d : dims) {
            t.addDims(d);
        }
        ByteBuffer bytes = data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        if (external == null) {
            t.setRawData(ByteString.copyFrom(bytes));
        } else {
            long offset = (external.size() + ALIGN - 1) / ALIGN * ALIGN;
            long length = bytes.remaining();
            long pos = offset;
            while (bytes.hasRemaining()) {
                pos += external.write(bytes, pos);
            }
            t.setDataLocation(TensorProto.DataLocation.EXTERNAL)
                    .addExternalData(entry("location", externalName))
                    .addExternalData(entry("offset", Long.toString(offset)))
                    .addExternalData(entry("length", Long.toString(length)));
        }
        graph.addInitializer(t);
        return name;
    }

    /** A small float constant (kept in the model file even in external-data mode). */
    String floats(float[] values, long... dims) {
        ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            b.putFloat(v);
        }
        b.flip();
        TensorProto.Builder t = TensorProto.newBuilder().setName(fresh("const")).setDataType(FLOAT).setRawData(ByteString.copyFrom(b));
        for (long d : dims) {
            t.addDims(d);
        }
        graph.addInitializer(t);
        return t.getName();
    }

    /** A scalar float constant. */
    String scalar(float v) {
        return floats(new float[] {v});
    }

    /** A 1-D int64 constant (shapes, axes, indices). */
    String longs(long... values) {
        TensorProto.Builder t = TensorProto.newBuilder().setName(fresh("const")).setDataType(INT64).addDims(values.length);
        for (long v : values) {
            t.addInt64Data(v);
        }
        graph.addInitializer(t);
        return t.getName();
    }

    /** A scalar int64 constant. */
    String longScalar(long v) {
        TensorProto t = TensorProto.newBuilder().setName(fresh("const")).setDataType(INT64).addInt64Data(v).build();
        graph.addInitializer(t);
        return t.getName();
    }

    /** Adds a node with one output (a fresh name unless {@code out} is given via {@link #opTo}). */
    String op(String type, String[] inputs, AttributeProto... attrs) {
        return opTo(fresh(type), type, inputs, attrs);
    }

    String op(String type, String a, AttributeProto... attrs) {
        return op(type, new String[] {a}, attrs);
    }

    String op(String type, String a, String b, AttributeProto... attrs) {
        return op(type, new String[] {a, b}, attrs);
    }

    /** Adds a node writing to the given output name (graph outputs). */
    String opTo(String out, String type, String[] inputs, AttributeProto... attrs) {
        NodeProto.Builder n = NodeProto.newBuilder().setOpType(type).setName("n" + (counter++) + "_" + type).addOutput(out);
        for (String in : inputs) {
            n.addInput(in);
        }
        for (AttributeProto a : attrs) {
            n.addAttribute(a);
        }
        graph.addNode(n);
        return out;
    }

    /** A node with several outputs. */
    String[] opN(String type, int outputs, String[] inputs, AttributeProto... attrs) {
        NodeProto.Builder n = NodeProto.newBuilder().setOpType(type).setName("n" + (counter++) + "_" + type);
        String[] outs = new String[outputs];
        for (int i = 0; i < outputs; i++) {
            outs[i] = fresh(type);
            n.addOutput(outs[i]);
        }
        for (String in : inputs) {
            n.addInput(in);
        }
        for (AttributeProto a : attrs) {
            n.addAttribute(a);
        }
        graph.addNode(n);
        return outs;
    }

    static AttributeProto attr(String name, long v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(v).build();
    }

    static AttributeProto attr(String name, long... v) {
        AttributeProto.Builder a = AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INTS);
        for (long x : v) {
            a.addInts(x);
        }
        return a.build();
    }

    /** A tensor-valued attribute holding one float (ConstantOfShape's value). */
    static AttributeProto attrFloatTensor(String name, float v) {
        TensorProto t = TensorProto.newBuilder().setDataType(FLOAT).addDims(1).addFloatData(v).build();
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.TENSOR).setT(t).build();
    }

    private String fresh(String prefix) {
        return prefix + "_" + (counter++);
    }

    private static StringStringEntryProto entry(String k, String v) {
        return StringStringEntryProto.newBuilder().setKey(k).setValue(v).build();
    }

    @Override
    public void close() throws IOException {
        if (external != null) {
            external.close();
        }
    }
}
