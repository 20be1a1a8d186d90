package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;

import java.util.List;

/**
 * Small pieces of the {@link Trainer}'s step: a micro-batch of token windows as one [n, T] array, and PyTorch's
 * {@code clip_grad_norm_} with the global norm it reads (also Compresso's check for non-finite gradients).
 */
public final class Batches {
    private Batches() {
    }

    /** Windows {@code first .. first + n - 1} as int64 [n, T] in {@code m}. */
    static NDArray ids(NDManager m, int first, int n, long[][] windows) {
        int t = windows[first].length;
        long[] flat = new long[n * t];
        for (int i = 0; i < n; i++) {
            System.arraycopy(windows[first + i], 0, flat, i * t, t);
        }
        return m.create(flat, new Shape(n, t));
    }

    /**
     * PyTorch's clip_grad_norm_: scale every gradient by max / (norm + 1e-6) when the global L2 norm exceeds max
     * (0: no clipping). Returns the norm before clipping.
     */
    static double clip(List<NDArray> grads, double max) {
        double norm = norm(grads);
        if (max > 0 && norm > max) {
            double coef = max / (norm + 1e-6);
            grads.forEach(g -> g.muli(coef));
        }
        return norm;
    }

    /** The global L2 norm of {@code grads} (a sum of each tensor's squares, in order). */
    public static double norm(List<NDArray> grads) {
        double sq = 0;
        for (NDArray g : grads) {
            sq += g.square().sum().getFloat();
        }
        return Math.sqrt(sq);
    }
}
