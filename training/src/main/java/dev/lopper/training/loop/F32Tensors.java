package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
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

/**
 * fp32 tensors as training holds them: small files (adapters, optimizer moments) written and read bit for bit,
 * tensors in libtorch-owned storage, and autograd leaves aliasing them.
 */
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

    /**
     * {@code x}'s storage (no copy) as a tensor owned by {@code scope}, outside any autograd graph: every intermediate
     * computed from it lands in scope.
     */
    public static NDArray alias(NDArray x, NDManager scope) {
        NDArray a = x.stopGradient();
        a.attach(scope);
        return a;
    }

    /** A copy of {@code a} owned by {@code into}: it outlives the (sub)manager that computed it. */
    public static NDArray keep(NDArray a, NDManager into) {
        NDArray c = a.duplicate();
        c.attach(into);
        return c;
    }

    /** An autograd leaf sharing {@code x}'s storage (no copy), owned by {@code scope}; after a backward its gradient is dL/dx. */
    public static NDArray leaf(NDArray x, NDManager scope) {
        NDArray leaf = alias(x, scope);
        leaf.setRequiresGradient(true);
        return leaf;
    }

    /** A {@link #leaf} of every tensor, under the same names, in the same order. */
    public static Map<String, NDArray> leaves(Map<String, NDArray> tensors, NDManager scope) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        tensors.forEach((name, x) -> out.put(name, leaf(x, scope)));
        return out;
    }

    /** Copies {@code data} into {@code target} in place (its storage stays the one libtorch allocated). */
    public static void copyInto(NDArray target, float[] data) {
        try (NDArray src = owned(target.getManager(), data, target.getShape())) {
            target.set(new ai.djl.ndarray.index.NDIndex(":"), src);
        }
    }
}
