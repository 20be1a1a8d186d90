package dev.lopper.pruning.criteria;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.lopper.calibration.gradient.LayerParam;
import dev.lopper.model.LayerWeights;

/**
 * What the gradient criteria (LLM-Pruner, GBLM) share: which linear weights enter a structured score and along which
 * axis a structure cuts them, and the fp64 reductions of a per-element score to per-row / per-column sums.
 */
final class GradientScores {
    /** The seven linear weights of a decoder layer, the ones both papers score. */
    static final LayerParam[] LINEARS = {LayerParam.Q, LayerParam.K, LayerParam.V, LayerParam.O, LayerParam.GATE,
            LayerParam.UP, LayerParam.DOWN};

    private GradientScores() {
    }

    /**
     * Whether a structure cuts {@code p}'s input columns (o_proj, down_proj: Torch-Pruning's in-channels) rather than
     * its output rows (q/k/v/gate/up: out-channels).
     */
    static boolean cutsColumns(LayerParam p) {
        return p == LayerParam.O || p == LayerParam.DOWN;
    }

    /** {@code w} as fp64, attached to {@code scope} (a fresh copy: the layer's fp32 array is left as it is). */
    static NDArray f64(NDArray w, NDManager scope) {
        NDArray a = w.toType(DataType.FLOAT64, true);
        a.attach(scope);
        return a;
    }

    /** {@code a} attached to {@code scope} (so the layer's statistics manager does not collect temporaries). */
    static NDArray in(NDArray a, NDManager scope) {
        a.attach(scope);
        return a;
    }

    /** Per structure index of {@code p}: the sum over the cut axis' other dimension of {@code s} [out, in]. */
    static double[] perIndex(NDArray s, LayerParam p) {
        return s.sum(new int[] {cutsColumns(p) ? 0 : 1}).toDoubleArray();
    }

    /** {@code w}'s array of {@code p}, or null when the layer has none (an emptied module). */
    static NDArray weight(LayerWeights w, LayerParam p) {
        NDArray a = p.of(w);
        return a == null || a.size() == 0 ? null : a;
    }
}
