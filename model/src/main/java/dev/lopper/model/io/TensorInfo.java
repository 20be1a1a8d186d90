package dev.lopper.model.io;

import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

import java.nio.file.Path;

/**
 * Where one tensor lives in a safetensors file.
 *
 * @param file the .safetensors file
 * @param begin byte offset of the data, from the file's start (header included)
 * @param byteLength bytes of data = shape.size() x dtype size
 */
public record TensorInfo(String name, DataType dtype, Shape shape, Path file, long begin, long byteLength) {
}
