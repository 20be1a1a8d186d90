package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * Constants for the autograd graph. DJL's {@code x.mul(Number)} / {@code x.div(Number)} wrap the number in a 0-d
 * tensor over a Java direct buffer ({@code torch::from_blob}) and close it right after the op. The backward of a
 * product keeps that tensor to compute {@code d(x c)/dx = c}, so by the time of the backward its memory may have
 * been freed by a GC and reused: garbage or NaN gradients that come and go from run to run. A constant that sits
 * between a forward and its backward is therefore made here, in storage libtorch owns (refcounted with the
 * graph).
 *
 * <pre>{@code
 * NDArray scores = q.matMul(kT).mul(Scalars.of(q.getManager(), 1 / Math.sqrt(headDim)));
 * }</pre>
 */
public final class Scalars {
    private Scalars() {
    }

    /** A 0-d fp32 tensor holding {@code v}, owned by {@code m}, whose storage libtorch allocated. */
    public static NDArray of(NDManager m, double v) {
        try (NDArray wrapped = m.create((float) v)) {
            return wrapped.duplicate();
        }
    }
}
