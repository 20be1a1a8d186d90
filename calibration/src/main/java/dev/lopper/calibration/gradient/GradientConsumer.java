package dev.lopper.calibration.gradient;

import dev.lopper.model.LayerWeights;

/**
 * Receives each decoder layer's gradient statistics as soon as the backward pass has finished that layer (layers
 * arrive last to first). The layer's weights and statistics are released when this returns, so a criterion
 * reduces them here to what it keeps (per-channel or per-head scores), and memory stays near one layer.
 *
 * <pre>{@code
 * GradientConsumer taylor = (w, g) -> {
 *     // LLM-Pruner param_first: |W * G| with G the gradient of the mean loss, summed over each row
 *     double[] rows = w.gate().toType(DataType.FLOAT64, false).mul(g.meanGradient(LayerParam.GATE)).abs()
 *             .sum(new int[] {1}).toDoubleArray();
 *     scores.put(w.index(), rows);
 * };
 * }</pre>
 */
@FunctionalInterface
public interface GradientConsumer {
    /**
     * @param weights the layer's fp32 weights (still loaded)
     * @param gradients the layer's statistics over all windows
     */
    void layerDone(LayerWeights weights, LayerGradients gradients);
}
