package dev.lopper.calibration.gradient;

import ai.djl.ndarray.NDArray;

/**
 * A per-sample quantity {@code f(W, g_n)} that the engine sums over windows instead of {@code g_n} and
 * {@code g_n^2}, for a criterion whose score is linear in such a sum: LLM-Pruner's {@code param_mix}
 * {@code W (mean g) - W (mean g^2) W / 2 = W * (1/N) sum_n g_n (1 - W g_n / 2)} needs one layer-sized sum
 * instead of two, which is what keeps an 8B-shaped layer's backward under 4 GB.
 *
 * <pre>{@code
 * SampleTerm mix = (p, w, g) -> g.muli(w.mul(g).muli(-0.5).addi(1)); // g (1 - W g / 2), in place on g
 * GradientEngine.Options o = GradientEngine.Options.defaults().withSampleTerm(mix);  // per sample, sums of the term
 * }</pre>
 */
@FunctionalInterface
public interface SampleTerm {
    /**
     * The term for one window's gradient {@code grad} of parameter {@code p} with weight {@code weight} (same
     * shape); may compute in place on {@code grad} (discarded afterwards) and return it.
     */
    NDArray apply(LayerParam p, NDArray weight, NDArray grad);
}
