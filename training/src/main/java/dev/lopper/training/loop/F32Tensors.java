package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.io.SafeTensorsFile;
import dev.lopper.model.io.SafeTensorsWriter;
import dev.lopper.model.io.TensorInfo;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Small fp32 tensor files (adapters, optimizer moments), written and read bit for bit. */
public final class F32Tensors {
    private F32Tensors() {
    }

    public static void write(Path file, Map<String, NDArray> tensors, Map<String, String> metadata) throws IOException {
        List<SafeTensorsWriter.Entry> entries = new ArrayList<>();
        tensors.forEach((name, a) -> entries.add(new SafeTensorsWriter.Entry(name, DataType.FLOAT32, a.getShape(), () -> {
            float[] f = a.toFloatArray();
            ByteBuffer b = ByteBuffer.allocate(f.length * 4).order(ByteOrder.LITTLE_ENDIAN);
            b.asFloatBuffer().put(f);
            return b;
        })));
        SafeTensorsWriter.write(file, entries, metadata);
    }

    /** Every tensor of {@code file} as float[] (F32 only), with its shape. */
    public static Map<String, Loaded> read(Path file) {
        Map<String, Loaded> out = new LinkedHashMap<>();
        try (SafeTensorsFile f = SafeTensorsFile.open(file)) {
            for (TensorInfo t : f.tensors().values()) {
                if (t.dtype() != DataType.FLOAT32) {
                    throw ModelFormatException.file(file, "tensor '" + t.name() + "' is " + t.dtype() + "; expected F32");
                }
                float[] data = new float[(int) t.shape().size()];
                f.map(t).asFloatBuffer().get(data);
                out.put(t.name(), new Loaded(t.shape().getShape(), data));
            }
        }
        return out;
    }

    public record Loaded(long[] shape, float[] data) {
    }

    /**
     * A tensor from Java floats whose storage libtorch owns. DJL wraps a direct buffer without copying
     * (torch::from_blob) and keeps it alive only through the Java array object; {@code NDArray.set(float[])}
     * even drops that reference while the tensor keeps using the memory, which a later GC frees (the NaNs seen
     * in resumed runs). So copy into a tensor torch allocated, and release the wrapper.
     */
    public static NDArray owned(ai.djl.ndarray.NDManager m, float[] data, ai.djl.ndarray.types.Shape shape) {
        try (NDArray wrapped = m.create(data, shape)) {
            return wrapped.duplicate();
        }
    }

    /** Copies {@code data} into {@code target} in place (its storage stays the one libtorch allocated). */
    public static void copyInto(NDArray target, float[] data) {
        try (NDArray src = owned(target.getManager(), data, target.getShape())) {
            target.set(new ai.djl.ndarray.index.NDIndex(":"), src);
        }
    }
}
