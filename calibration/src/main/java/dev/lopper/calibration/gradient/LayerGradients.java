package dev.lopper.calibration.gradient;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

import java.util.Collections;
import java.util.EnumMap;
import java.util.Map;
import java.util.Set;

/**
 * The gradient statistics of one decoder layer's parameters over the calibration windows, fp32 on the engine's
 * device, as the official codes accumulate them (LLM-Pruner's {@code acc_grad} in the model's dtype, GBLM's l2 sum in
 * fp32); fp64 sums would double the largest resident block of an 8B-shaped layer (16 B/param with squares). A <em>sample</em> is one calibration window and {@code g_n} the gradient of that window's
 * loss (the mean next-token cross-entropy over its {@code T - 1} shifted targets):
 * <ul>
 *   <li>{@link #gradientSum} = {@code sum_n g_n};</li>
 *   <li>{@link #squaredGradientSum} = {@code sum_n g_n^2} (element-wise), when the engine ran per sample.</li>
 * </ul>
 * The papers' quantities are one call each: LLM-Pruner's {@code W.grad} (the gradient of the batch's mean loss)
 * is {@link #meanGradient}, its {@code acc_grad} (diagonal Fisher) {@link #meanSquaredGradient}, GBLM's l2 file
 * {@code 100 x} {@link #l2OverSamples}.
 *
 * <p>Arrays returned live in this object's manager and are released when the engine closes it, right after the
 * consumer's {@link GradientConsumer#layerDone} returns: copy out (e.g. {@code toDoubleArray()}) what you keep.
 */
public final class LayerGradients implements AutoCloseable {
    private final int layer;
    private final NDManager manager;
    private final boolean squares;
    private final boolean sums;
    private final SampleTerm term;
    private final Map<LayerParam, NDArray> termSum = new EnumMap<>(LayerParam.class);
    private final Map<LayerParam, NDArray> sum = new EnumMap<>(LayerParam.class);
    private final Map<LayerParam, NDArray> sumSq = new EnumMap<>(LayerParam.class);
    private int samples;

    LayerGradients(int layer, NDManager manager, boolean squares, boolean sums, SampleTerm term) {
        if (!squares && !sums && term == null) {
            throw new IllegalArgumentException("nothing to collect: neither sums nor squares");
        }
        this.layer = layer;
        this.manager = manager;
        this.squares = squares;
        this.sums = sums;
        this.term = term;
    }

    /**
     * Adds the fp32 gradient {@code grad} of parameter {@code p}, the gradient of the summed losses of the chunk's
     * windows; {@code oneSample} says the chunk is a single window, so its square is that sample's.
     */
    void add(LayerParam p, NDArray weight, NDArray grad, boolean oneSample) {
        if ((squares || term != null) && !oneSample) {
            throw new IllegalStateException("per-sample statistics need one window per backward chunk");
        }
        if (sums) {
            accumulate(sum, p, grad);
        }
        if (squares) {
            // grad is this piece's own .grad, discarded after this call: squared in place, no temporary
            accumulate(sumSq, p, grad.muli(grad));
        } else if (term != null) {
            accumulate(termSum, p, term.apply(p, weight, grad));
        }
    }

    private void accumulate(Map<LayerParam, NDArray> into, LayerParam p, NDArray g) {
        NDArray acc = into.get(p);
        if (acc == null) {
            NDArray copy = g.duplicate(); // the gradients' own dtype: fp32 (fp64 where a test runs the layer in fp64)
            copy.attach(manager);
            into.put(p, copy);
        } else {
            acc.addi(g);
        }
    }

    /** Counts {@code n} more windows as done (after all parameters' gradients of a chunk are added). */
    void countSamples(int n) {
        samples += n;
    }

    public int layer() {
        return layer;
    }

    /** Windows whose gradients are in the sums. */
    public int samples() {
        return samples;
    }

    /** The parameters this layer has (biases only where the model has them). */
    public Set<LayerParam> params() {
        return Collections.unmodifiableSet(sums ? sum.keySet() : squares ? sumSq.keySet() : termSum.keySet());
    }

    /** Whether {@link #squaredGradientSum} is available (the engine ran one window per backward). */
    public boolean hasSquares() {
        return squares;
    }

    /** {@code sum_n g_n}, in the gradients' dtype (fp32), shaped as the weight ([out, in] for a linear layer). */
    public NDArray gradientSum(LayerParam p) {
        if (!sums) {
            throw new IllegalStateException("sums of gradients were not kept (Options.withSums(false))");
        }
        NDArray a = sum.get(p);
        if (a == null) {
            throw new IllegalArgumentException("layer " + layer + " has no " + p);
        }
        return a;
    }

    /** {@code sum_n g_n^2}, in the gradients' dtype (fp32); needs per-sample statistics ({@link GradientEngine.Options#perSample}). */
    public NDArray squaredGradientSum(LayerParam p) {
        if (!squares) {
            throw new IllegalStateException("per-sample squared gradients were not collected (Options.perSample)");
        }
        NDArray a = sumSq.get(p);
        if (a == null) {
            throw new IllegalArgumentException("layer " + layer + " has no " + p);
        }
        return a;
    }

    /** {@code sum_n term(W, g_n)} of the {@link SampleTerm} the engine ran with. */
    public NDArray termSum(LayerParam p) {
        if (term == null) {
            throw new IllegalStateException("no per-sample term was summed (Options.withSampleTerm)");
        }
        NDArray a = termSum.get(p);
        if (a == null) {
            throw new IllegalArgumentException("layer " + layer + " has no " + p);
        }
        return a;
    }

    /** {@code (1/N) sum_n g_n}: the gradient of the mean loss over all windows (LLM-Pruner's {@code W.grad}). */
    public NDArray meanGradient(LayerParam p) {
        return gradientSum(p).div(samples);
    }

    /** {@code (1/N) sum_n g_n^2}: LLM-Pruner's {@code acc_grad}, the diagonal Fisher. */
    public NDArray meanSquaredGradient(LayerParam p) {
        return squaredGradientSum(p).div(samples);
    }

    /** {@code sqrt(sum_n g_n^2)}: the l2 norm over samples (GBLM stores 100 times this). */
    public NDArray l2OverSamples(LayerParam p) {
        return squaredGradientSum(p).sqrt();
    }

    @Override
    public void close() {
        manager.close();
    }
}
