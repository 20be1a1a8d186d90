package dev.lopper.model.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

import java.io.IOException;
import java.nio.channels.WritableByteChannel;
import java.util.Set;

/**
 * Named weights, loaded on demand. A checkpoint on disk is one; a pruned model held in memory is another.
 * Names and layouts are HF's ({@code model.layers.3.self_attn.q_proj.weight}, [out, in]).
 */
public interface TensorSource {
    Set<String> names();

    default boolean has(String name) {
        return names().contains(name);
    }

    Shape shape(String name);

    /** The dtype the tensor is stored in (what a save keeps by default). */
    DataType storedType(String name);

    /** Loads a tensor into {@code manager} as {@code type} (a fresh array the caller owns). */
    NDArray load(String name, NDManager manager, DataType type);

    default NDArray load(String name, NDManager manager) {
        return load(name, manager, DataType.FLOAT32);
    }

    /**
     * The tensor's bytes as stored on disk, readable by range, or null where this source holds it in another form
     * (in memory, sliced, converted); then {@link #load} is the way to it.
     */
    default StoredBytes stored(String name) {
        return null;
    }

    /**
     * Writes the tensor to {@code out} in its {@link #storedType} without converting it (a byte-for-byte copy of
     * the stored data, or a slice of it), holding at most a row of it in memory; returns false, having written
     * nothing, where this source cannot (then the caller loads and converts).
     */
    default boolean writeStored(String name, WritableByteChannel out) throws IOException {
        StoredBytes s = stored(name);
        if (s == null) {
            return false;
        }
        s.transferTo(0, s.size(), out);
        return true;
    }

    /**
     * Rows {@code rows} (indices along the first axis) of a tensor as {@code type}: {@code [rows.length, ...]}, the
     * same values as {@code load(name).get(rows)}. A stored tensor is read row by row, so an embedding lookup for
     * a few thousand calibration tokens never converts the whole [vocab, hidden] matrix.
     */
    default NDArray loadRows(String name, long[] rows, NDManager manager, DataType type) {
        StoredBytes s = stored(name);
        if (s != null) {
            return RowGather.gather(name, s, storedType(name), shape(name), rows, manager, type);
        }
        return RowGather.fromLoaded(this, name, rows, manager, type);
    }
}
