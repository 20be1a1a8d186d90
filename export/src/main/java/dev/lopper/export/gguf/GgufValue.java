package dev.lopper.export.gguf;

import java.io.IOException;
import java.util.Arrays;
import java.util.List;

/**
 * A typed GGUF metadata value (gguf.md's {@code gguf_metadata_value_type}): scalars, strings and arrays of one
 * element type. Arrays hold {@code int[]} (INT32), {@code String[]} or {@code float[]} elements.
 *
 * <pre>{@code
 * GgufValue.u32(8); GgufValue.f32(1e-5f); GgufValue.int32s(new int[] {8, 4, 6});
 * }</pre>
 */
public record GgufValue(Type type, Object value, Type elementType) {
    /** gguf.md's value types with their numbers. */
    public enum Type {
        UINT8(0), INT8(1), UINT16(2), INT16(3), UINT32(4), INT32(5), FLOAT32(6), BOOL(7), STRING(8), ARRAY(9),
        UINT64(10), INT64(11), FLOAT64(12);

        final int id;

        Type(int id) {
            this.id = id;
        }

        static Type of(int id) {
            for (Type t : values()) {
                if (t.id == id) {
                    return t;
                }
            }
            throw new IllegalArgumentException("GGUF value type " + id + " is unknown; expected 0..12");
        }
    }

    public static GgufValue u32(long v) {
        return new GgufValue(Type.UINT32, v, null);
    }

    public static GgufValue i32(int v) {
        return new GgufValue(Type.INT32, (long) v, null);
    }

    public static GgufValue f32(double v) {
        return new GgufValue(Type.FLOAT32, (float) v, null);
    }

    public static GgufValue bool(boolean v) {
        return new GgufValue(Type.BOOL, v, null);
    }

    public static GgufValue string(String v) {
        return new GgufValue(Type.STRING, v, null);
    }

    public static GgufValue int32s(int[] v) {
        return new GgufValue(Type.ARRAY, v.clone(), Type.INT32);
    }

    public static GgufValue strings(List<String> v) {
        return new GgufValue(Type.ARRAY, v.toArray(new String[0]), Type.STRING);
    }

    public static GgufValue float32s(float[] v) {
        return new GgufValue(Type.ARRAY, v.clone(), Type.FLOAT32);
    }

    /** The value as a long (integer scalars). */
    public long asLong() {
        return ((Number) value).longValue();
    }

    public int[] asInts() {
        return (int[]) value;
    }

    public String[] asStrings() {
        return (String[]) value;
    }

    void write(GgufWriter.Out out) throws IOException {
        out.u32(type.id);
        switch (type) {
            case UINT32, INT32 -> out.u32((int) asLong());
            case UINT64, INT64 -> out.u64(asLong());
            case FLOAT32 -> out.f32((Float) value);
            case FLOAT64 -> out.f64((Double) value);
            case BOOL -> out.u8((Boolean) value ? 1 : 0);
            case STRING -> out.string((String) value);
            case ARRAY -> {
                out.u32(elementType.id);
                switch (elementType) {
                    case INT32 -> {
                        int[] a = (int[]) value;
                        out.u64(a.length);
                        for (int x : a) {
                            out.u32(x);
                        }
                    }
                    case FLOAT32 -> {
                        float[] a = (float[]) value;
                        out.u64(a.length);
                        for (float x : a) {
                            out.f32(x);
                        }
                    }
                    case STRING -> {
                        String[] a = (String[]) value;
                        out.u64(a.length);
                        for (String x : a) {
                            out.string(x);
                        }
                    }
                    default -> throw new IllegalStateException("arrays of " + elementType + " are not written");
                }
            }
            default -> throw new IllegalStateException(type + " values are not written");
        }
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof GgufValue g) || g.type != type || g.elementType != elementType) {
            return false;
        }
        return Arrays.deepEquals(new Object[] {value}, new Object[] {g.value});
    }

    @Override
    public int hashCode() {
        return type.hashCode();
    }

    @Override
    public String toString() {
        if (value instanceof int[] a) {
            return Arrays.toString(a);
        }
        if (value instanceof String[] a) {
            return a.length > 8 ? "[" + a.length + " strings]" : Arrays.toString(a);
        }
        if (value instanceof float[] a) {
            return Arrays.toString(a);
        }
        return String.valueOf(value);
    }
}
