package dev.lopper.export;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.io.TensorSource;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Reads one weight at a time from a {@link TensorSource} as little-endian fp32 bytes, checking its shape, so an
 * export never holds more than one tensor beyond what it has written.
 */
final class Weights {
    private final TensorSource source;

    Weights(TensorSource source) {
        this.source = source;
    }

    boolean has(String name) {
        return source.has(name);
    }

    /** The tensor as stored ([out, in] for linear weights), fp32. */
    ByteBuffer get(String name, long... expected) {
        return read(name, false, expected);
    }

    /** A 2-D weight [out, in] transposed to [in, out] (the layout MatMul wants), fp32. */
    ByteBuffer transposed(String name, long... expected) {
        return read(name, true, expected);
    }

    private ByteBuffer read(String name, boolean transpose, long... expected) {
        if (!source.has(name)) {
            throw new ModelFormatException("tensor '" + name + "' is missing (the config implies shape " + new Shape(expected) + ")");
        }
        Shape found = source.shape(name);
        if (!found.equals(new Shape(expected))) {
            throw new ModelFormatException("tensor '" + name + "' has shape " + found + ", but config.json implies " + new Shape(expected));
        }
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            NDArray a = source.load(name, m, DataType.FLOAT32);
            // reshape(-1) of a transposed view forces a contiguous copy in the transposed order
            NDArray flat = transpose ? a.transpose(1, 0).reshape(-1) : a.reshape(-1);
            ByteBuffer data = flat.toByteBuffer();
            ByteBuffer copy = ByteBuffer.allocateDirect(data.remaining()).order(ByteOrder.LITTLE_ENDIAN);
            copy.put(data).flip();
            return copy;
        }
    }

    /** Bytes of fp32 data for every tensor the source holds (decides external data). */
    long totalFloat32Bytes() {
        long total = 0;
        for (String n : source.names()) {
            total += source.shape(n).size() * 4;
        }
        return total;
    }
}
