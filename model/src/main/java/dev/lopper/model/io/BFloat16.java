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

    /** fp32 values -> little-endian bf16 bytes, rounding to nearest even (as torch's .to(bfloat16)). */
    public static ByteBuffer fromFloat32(float[] values) {
        ByteBuffer out = ByteBuffer.allocateDirect(values.length * 2).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            out.putShort(round(v));
        }
        return out.flip();
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
