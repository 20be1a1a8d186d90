package dev.lopper.model.io;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;

/**
 * bfloat16 <-> float32 by hand. Written here because DJL 0.36's PyTorch engine aborts the JVM (C++ terminate)
 * when it creates or casts a BFLOAT16 array; the conversion itself is exact bit arithmetic: bf16 is the top
 * half of an fp32.
 */
public final class BFloat16 {
    private BFloat16() {
    }

    /** Little-endian bf16 bytes -> a new direct little-endian buffer of fp32 values. */
    public static ByteBuffer toFloat32(ByteBuffer bf16) {
        ShortBuffer in = bf16.duplicate().order(ByteOrder.LITTLE_ENDIAN).asShortBuffer();
        ByteBuffer out = ByteBuffer.allocateDirect(in.remaining() * 4).order(ByteOrder.LITTLE_ENDIAN);
        FloatBuffer f = out.asFloatBuffer();
        while (in.hasRemaining()) {
            f.put(Float.intBitsToFloat((in.get() & 0xFFFF) << 16));
        }
        return out;
    }

    /** Elements per task of {@link #widenInto}: 1 Mi values (2 MiB read, 4 MiB written), enough to amortize a task. */
    private static final int WIDEN_BLOCK = 1 << 20;

    /**
     * Little-endian bf16 bytes -> fp32 values written into {@code fp32} (little-endian, at least twice the bytes),
     * e.g. the memory of a libtorch tensor: one pass over the output, no zero-filled staging buffer and no second
     * copy. Blocks run on the common fork-join pool (the widening is memory-bound, and a layer of an 8B model is
     * 218 M values); within a block, bulk array transfers and a shift loop the JIT vectorizes.
     */
    public static void widenInto(ByteBuffer bf16, ByteBuffer fp32) {
        ShortBuffer in = bf16.duplicate().order(ByteOrder.LITTLE_ENDIAN).asShortBuffer();
        java.nio.IntBuffer out = fp32.duplicate().order(ByteOrder.LITTLE_ENDIAN).asIntBuffer();
        int n = in.remaining();
        if (out.remaining() < n) {
            throw new IllegalArgumentException("fp32 buffer holds " + out.remaining() + " values, need " + n);
        }
        int blocks = (n + WIDEN_BLOCK - 1) / WIDEN_BLOCK;
        java.util.stream.IntStream range = java.util.stream.IntStream.range(0, blocks);
        (blocks > 1 ? range.parallel() : range).forEach(b -> {
            int from = b * WIDEN_BLOCK;
            int len = Math.min(WIDEN_BLOCK, n - from);
            short[] s = new short[len];
            int[] w = new int[len];
            in.get(from, s, 0, len);
            for (int i = 0; i < len; i++) {
                w[i] = (s[i] & 0xFFFF) << 16;
            }
            out.put(from, w, 0, len);
        });
    }

    /** fp32 values -> little-endian bf16 bytes, rounding to nearest even (as torch's .to(bfloat16)). */
    public static ByteBuffer fromFloat32(float[] values) {
        ByteBuffer out = ByteBuffer.allocateDirect(values.length * 2).order(ByteOrder.LITTLE_ENDIAN);
        putFromFloat32(out, values);
        return out.flip();
    }

    /** Appends fp32 values to a little-endian buffer as bf16, rounding as {@link #fromFloat32}. */
    public static void putFromFloat32(ByteBuffer out, float[] values) {
        for (float v : values) {
            out.putShort(round(v));
        }
    }

    static short round(float v) {
        int bits = Float.floatToRawIntBits(v);
        if (Float.isNaN(v)) {
            return (short) ((bits >>> 16) | 0x40); // keep it a (quiet) NaN
        }
        int lsb = (bits >>> 16) & 1;
        return (short) ((bits + 0x7FFF + lsb) >>> 16);
    }
}
