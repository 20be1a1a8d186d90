package dev.lopper.model.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

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
}
