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

    /**
     * Whether this collector can save and restore its statistics per layer ({@link #saveLayer}, {@link #loadLayer}),
     * so that a killed calibration resumes after its last finished layer. Results computed in {@link #endLayer} are
     * not saved: on resume the engine calls {@link #beginLayer} and {@link #endLayer} again for every finished layer,
     * with its weights and the restored statistics.
     */
    default boolean resumable() {
        return false;
    }

    /** Writes the statistics of layer {@code layer}. */
    default void saveLayer(int layer, java.io.DataOutputStream out) throws java.io.IOException {
        throw new UnsupportedOperationException(getClass().getName() + " is not resumable");
    }

    /** Restores what {@link #saveLayer} wrote for layer {@code layer}. */
    default void loadLayer(int layer, java.io.DataInputStream in) throws java.io.IOException {
        throw new UnsupportedOperationException(getClass().getName() + " is not resumable");
    }
}
