package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;

/** Additive attention masks: 0 where a query may attend, -inf where it may not. */
public final class Masks {
    /** The longest window whose [T, T] mask fits in one Java array. */
    public static final int MAX_TOKENS = 46340;
    private static final long MAX_MASK = (long) MAX_TOKENS * MAX_TOKENS;

    private Masks() {
    }

    /**
     * Causal mask [T, T]; with {@code window > 0} a query also sees only the last {@code window} positions
     * (Mistral's sliding window); with a padding mask [B, T], padded keys are masked too, giving [B, 1, T, T].
     */
    public static NDArray causal(NDManager manager, int t, int window, NDArray paddingMask) {
        if ((long) t * t > MAX_MASK) {
            throw new IllegalArgumentException("a window of " + t + " tokens: expected at most " + MAX_TOKENS
                    + " tokens (--seq-len), the longest whose attention mask fits in one array");
        }
        float[] m = new float[t * t];
        for (int i = 0; i < t; i++) {
            for (int j = 0; j < t; j++) {
                boolean visible = j <= i && (window <= 0 || i - j < window);
                m[i * t + j] = visible ? 0f : Float.NEGATIVE_INFINITY;
            }
        }
        NDArray mask = manager.create(m, new Shape(t, t));
        if (paddingMask == null) {
            return mask;
        }
        long b = paddingMask.getShape().get(0);
        // keys that are padding get -inf; a fully padded query row keeps its diagonal so softmax stays finite
        NDArray keyBlocked = paddingMask.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).neg().add(1f)
                .mul(-1e30f).reshape(b, 1, 1, t);
        NDArray diagonal = manager.eye(t).reshape(1, 1, t, t);
        return mask.reshape(1, 1, t, t).add(keyBlocked.mul(diagonal.neg().add(1f)));
    }

    /**
     * Mask [T, start + T] for T new queries at positions start..start+T-1 over every key so far (a KV-cache
     * step): causal, and with {@code window > 0} only the last {@code window} positions.
     */
    public static NDArray window(NDManager manager, int start, int t, int window) {
        int keys = start + t;
        float[] m = new float[t * keys];
        for (int q = 0; q < t; q++) {
            int i = start + q;
            for (int j = 0; j < keys; j++) {
                boolean visible = j <= i && (window <= 0 || i - j < window);
                m[q * keys + j] = visible ? 0f : Float.NEGATIVE_INFINITY;
            }
        }
        return manager.create(m, new Shape(t, keys));
    }
}
