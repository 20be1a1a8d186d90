package dev.lopper.model.io;

import ai.djl.ndarray.types.DataType;

import java.util.Map;

/** Safetensors dtype names and the DJL types they map to. */
public final class SafeTensors {
    /** Safetensors dtype name to DJL type, for every dtype Lopper reads. */
    static final Map<String, DataType> DTYPES = Map.of(
            "F64", DataType.FLOAT64, "F32", DataType.FLOAT32, "F16", DataType.FLOAT16, "BF16", DataType.BFLOAT16,
            "I64", DataType.INT64, "I32", DataType.INT32, "I16", DataType.INT16, "I8", DataType.INT8,
            "U8", DataType.UINT8, "BOOL", DataType.BOOLEAN);

    /** Header sizes above this are refused rather than read into memory (the format's own limit is 100 MB). */
    static final long MAX_HEADER_BYTES = 100L * 1024 * 1024;

    private SafeTensors() {
    }

    /** The safetensors dtype name of a DJL type. */
    public static String name(DataType type) {
        return DTYPES.entrySet().stream().filter(e -> e.getValue() == type).map(Map.Entry::getKey).findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no safetensors dtype for " + type));
    }

    /** Parses a dtype name as written in a header, e.g. "BF16"; null when unknown. */
    public static DataType type(String name) {
        return DTYPES.get(name);
    }
}
