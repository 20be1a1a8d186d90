package dev.lopper.model.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** {@link TensorSource#loadRows}: rows read one at a time from the stored bytes, or indexed from a full load. */
final class RowGather {
    private RowGather() {
    }

    static NDArray gather(String name, StoredBytes s, DataType stored, Shape shape, long[] rows, NDManager manager, DataType type) {
        long n = shape.get(0);
        long rowElems = shape.size() / Math.max(1, n);
        long rowBytes = rowElems * stored.getNumOfBytes();
        boolean bf16 = stored == DataType.BFLOAT16;
        DataType created = bf16 ? DataType.FLOAT32 : stored;
        ByteBuffer out = ByteBuffer.allocateDirect(Math.toIntExact(rows.length * rowElems * created.getNumOfBytes())).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer row = ByteBuffer.allocateDirect(Math.toIntExact(rowBytes)).order(ByteOrder.LITTLE_ENDIAN);
        long[] dims = shape.getShape().clone();
        dims[0] = rows.length;
        try {
            for (long r : rows) {
                if (r < 0 || r >= n) {
                    throw new IndexOutOfBoundsException("row " + r + " of tensor '" + name + "' with " + n + " rows");
                }
                row.clear();
                s.read(r * rowBytes, row);
                row.flip();
                if (bf16) {
                    // the same exact bit widening as Checkpoint.load (BFloat16.toFloat32), row by row
                    while (row.hasRemaining()) {
                        out.putInt((row.getShort() & 0xFFFF) << 16);
                    }
                } else {
                    out.put(row);
                }
            }
            out.flip();
            try (NDArray wrapped = manager.create(out, new Shape(dims), created)) {
                // create() wraps the direct buffer (no copy): copy before the buffer is freed below
                return type == created ? wrapped.duplicate() : wrapped.toType(type, false);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read tensor '" + name + "'", e);
        } finally {
            DirectBuffers.free(out);
            DirectBuffers.free(row);
        }
    }

    static NDArray fromLoaded(TensorSource source, String name, long[] rows, NDManager manager, DataType type) {
        try (NDManager scope = manager.newSubManager()) {
            NDArray full = source.load(name, scope, type);
            NDArray out = full.get(new NDIndex("{}", scope.create(rows)));
            out.attach(manager);
            return out;
        }
    }
}
