package dev.lopper.calibration;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.LayerWeights;

import java.util.Set;

/**
 * Something that accumulates statistics while {@link CalibrationEngine} streams the calibration batch through
 * the model one layer at a time. A criterion declares what it needs ({@link #taps()}, {@link #wantsLayerIO()})
 * and reduces activations to small per-channel arrays as they pass; arrays handed to callbacks are views that
 * must not be kept or closed. Callbacks for layer {@code i} arrive in this order: {@link #beginLayer}, then per
 * chunk of sequences {@link #activation} (per tap) and {@link #layerIO}, then {@link #endLayer} while the layer's
 * weights are still loaded, then {@link #forwardWeights}.
 */
public interface StatsCollector {
    /** The taps whose activations {@link #activation} should receive. */
    default Set<Tap> taps() {
        return Set.of();
    }

    /** Whether {@link #layerIO} should receive each layer's input and output hidden states. */
    default boolean wantsLayerIO() {
        return false;
    }

    default void beginLayer(LayerWeights weights) {
    }

    /** Activations of {@code tap} for one chunk of sequences, [B, T, features] fp32. */
    default void activation(int layer, Tap tap, NDArray x) {
    }

    /** A layer's input and output hidden states for one chunk, both [B, T, hidden] fp32. */
    default void layerIO(int layer, NDArray input, NDArray output) {
    }

    /** Called after the whole batch has passed layer {@code weights.index()}; the weights are still loaded. */
    default void endLayer(LayerWeights weights) {
    }

    /**
     * Sequential pruning (Wanda's order): weights whose output should feed the next layer instead of the dense
     * layer's, e.g. with pruned channels zeroed; null (the default) keeps the dense output. Arrays must live in
     * {@code manager}, which is released with the layer.
     */
    default LayerWeights forwardWeights(LayerWeights dense, NDManager manager) {
        return null;
    }
}
