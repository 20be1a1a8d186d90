package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import dev.lopper.model.layer.Param;

/**
 * A seam around every projection ({@code LayerOp.Linear}) that {@link Decoder#layer} runs: it gets the
 * projection's input and its output {@code x W^T + b} and returns what the layer continues with. LoRA recovery
 * adds {@code (alpha / r) B A dropout(x)} here, so the layer's math is written once, in {@link Decoder}.
 *
 * <pre>{@code
 * ProjectionHook lora = (layer, weight, x, y) -> weight == Param.Q ? y.add(delta(layer, x)) : y;
 * NDArray out = Decoder.layer(w, x, cos, sin, mask, eps, headDim, LayerHooks.NONE, null, lora);
 * }</pre>
 */
@FunctionalInterface
public interface ProjectionHook {
    /** Leaves every projection as it is. */
    ProjectionHook NONE = (layer, weight, input, output) -> output;

    /**
     * @param layer the decoder layer's index
     * @param weight the projection's weight role (Q, K, V, O, GATE, UP or DOWN)
     * @param input the projection's input [B, T, in]
     * @param output {@code input W^T (+ b)} [B, T, out]
     * @return the value the layer uses as the projection's output (same shape)
     */
    NDArray project(int layer, Param weight, NDArray input, NDArray output);
}
