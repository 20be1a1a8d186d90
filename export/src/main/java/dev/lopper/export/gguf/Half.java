package dev.lopper.export.gguf;

import java.nio.ByteBuffer;

/**
 * fp32 to fp16 / bf16 with round-to-nearest-even, and ggml's Q8_0 quantization ({@code quantize_row_q8_0_ref}:
 * blocks of 32, scale d = amax / 127 stored as fp16, q = round(x / d) with halves away from zero).
 *
 * <pre>{@code
 * short h = Half.toHalf(0.1f);          // 0x2e66
 * float back = Half.fromHalf(h);        // 0.099975586
 * }</pre>
 */
public final class Half {
    private Half() {
    }

    /** IEEE half precision, round to nearest even; overflow to infinity, NaN kept. */
    public static short toHalf(float f) {
        int bits = Float.floatToRawIntBits(f);
        int sign = (bits >>> 16) & 0x8000;
        int abs = bits & 0x7fffffff;
        if (abs >= 0x7f800000) { // inf or NaN
            return (short) (sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0));
        }
        if (abs >= 0x477ff000) { // rounds to >= 65520: infinity
            return (short) (sign | 0x7c00);
        }
        if (abs < 0x38800000) { // below the smallest normal half (2^-14): subnormal or zero
            // value / 2^-24, rounded to nearest even
            float scaled = Float.intBitsToFloat(abs) * 16777216f; // exact (power of two)
            int m = (int) Math.rint(scaled);
            return (short) (sign | m);
        }
        int exp = ((abs >>> 23) - 127 + 15) << 10;
        int mant = abs & 0x7fffff;
        int h = exp | (mant >>> 13);
        int rest = mant & 0x1fff;
        if (rest > 0x1000 || (rest == 0x1000 && (h & 1) == 1)) {
            h++; // may carry into the exponent, which is still correct
        }
        return (short) (sign | h);
    }

    public static float fromHalf(short h) {
        int v = h & 0xffff;
        int sign = (v & 0x8000) << 16;
        int exp = (v >>> 10) & 0x1f;
        int mant = v & 0x3ff;
        if (exp == 0) {
            float f = mant * 5.9604645e-8f; // 2^-24
            return sign != 0 ? -f : f;
        }
        if (exp == 31) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
        }
        return Float.intBitsToFloat(sign | ((exp - 15 + 127) << 23) | (mant << 13));
    }

    /** bfloat16, round to nearest even (ggml_compute_fp32_to_bf16); NaN stays a quiet NaN. */
    public static short toBFloat16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7fffffff) > 0x7f800000) {
            return (short) ((bits >>> 16) | 64);
        }
        return (short) ((bits + (0x7fff + ((bits >>> 16) & 1))) >>> 16);
    }

    /** Appends {@code x} (length a multiple of 32) as Q8_0 blocks. */
    public static void quantizeQ8_0(float[] x, ByteBuffer out) {
        if (x.length % 32 != 0) {
            throw new IllegalArgumentException("Q8_0: " + x.length + " values is not a multiple of 32");
        }
        for (int b = 0; b < x.length; b += 32) {
            float amax = 0;
            for (int j = 0; j < 32; j++) {
                amax = Math.max(amax, Math.abs(x[b + j]));
            }
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            out.putShort(toHalf(d));
            for (int j = 0; j < 32; j++) {
                float v = x[b + j] * id; // |v| <= 127
                out.put((byte) (v >= 0 ? Math.round(v) : -Math.round(-v))); // roundf: halves away from zero
            }
        }
    }
}
