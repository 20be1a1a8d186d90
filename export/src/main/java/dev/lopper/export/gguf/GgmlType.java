package dev.lopper.export.gguf;

import java.nio.ByteBuffer;

/**
 * The ggml tensor types Lopper writes into GGUF files, with ggml's numbering ({@code enum ggml_type}) and the
 * conversions from fp32 (the same rounding as ggml's reference code).
 *
 * <pre>{@code
 * ByteBuffer out = ByteBuffer.allocate((int) GgmlType.Q8_0.bytes(64)).order(ByteOrder.LITTLE_ENDIAN);
 * GgmlType.Q8_0.encode(values, out);    // 2 blocks of 32: fp16 scale + 32 int8
 * }</pre>
 */
public enum GgmlType {
    F32(0, 1, 4),
    F16(1, 1, 2),
    Q8_0(8, 32, 34),
    BF16(30, 1, 2);

    private final int id;
    private final int blockSize;
    private final int blockBytes;

    GgmlType(int id, int blockSize, int blockBytes) {
        this.id = id;
        this.blockSize = blockSize;
        this.blockBytes = blockBytes;
    }

    /** ggml's number for the type. */
    public int id() {
        return id;
    }

    /** Elements per block (32 for Q8_0, else 1); a row's length must be a multiple of it. */
    public int blockSize() {
        return blockSize;
    }

    /** Bytes that {@code n} elements take (n a multiple of {@link #blockSize()}). */
    public long bytes(long n) {
        if (n % blockSize != 0) {
            throw new IllegalArgumentException(this + ": " + n + " elements is not a multiple of the block size " + blockSize);
        }
        return n / blockSize * blockBytes;
    }

    public static GgmlType of(int id) {
        for (GgmlType t : values()) {
            if (t.id == id) {
                return t;
            }
        }
        throw new IllegalArgumentException("ggml type " + id + " is not one Lopper reads; expected one of F32 (0), F16 (1), Q8_0 (8), BF16 (30)");
    }

    /** Appends {@code values} to {@code out} (little-endian) in this type. */
    public void encode(float[] values, ByteBuffer out) {
        switch (this) {
            case F32 -> {
                for (float v : values) {
                    out.putFloat(v);
                }
            }
            case F16 -> {
                for (float v : values) {
                    out.putShort(Half.toHalf(v));
                }
            }
            case BF16 -> {
                for (float v : values) {
                    out.putShort(Half.toBFloat16(v));
                }
            }
            case Q8_0 -> Half.quantizeQ8_0(values, out);
        }
    }

    /** Reads {@code n} elements of this type from {@code in} as fp32. */
    public float[] decode(ByteBuffer in, int n) {
        float[] v = new float[n];
        switch (this) {
            case F32 -> {
                for (int i = 0; i < n; i++) {
                    v[i] = in.getFloat();
                }
            }
            case F16 -> {
                for (int i = 0; i < n; i++) {
                    v[i] = Half.fromHalf(in.getShort());
                }
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) {
                    v[i] = Float.intBitsToFloat((in.getShort() & 0xffff) << 16);
                }
            }
            case Q8_0 -> {
                for (int b = 0; b < n / 32; b++) {
                    float d = Half.fromHalf(in.getShort());
                    for (int j = 0; j < 32; j++) {
                        v[b * 32 + j] = in.get() * d;
                    }
                }
            }
        }
        return v;
    }
}
