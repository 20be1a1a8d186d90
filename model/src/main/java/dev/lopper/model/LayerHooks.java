package dev.lopper.model;

import ai.djl.ndarray.NDArray;

/**
 * Taps on the activations inside one decoder layer, for calibration statistics. Each callback gets a view it
 * must not keep or close; shapes are [batch, seq, features].
 */
public interface LayerHooks {
    LayerHooks NONE = new LayerHooks() { };

    /** Input of q/k/v (the input-normed hidden state), [B, T, hidden]. */
    default void attentionInput(int layer, NDArray normed) { }

    /** Input of o_proj (concatenated head outputs), [B, T, heads x head_dim]. */
    default void oProjInput(int layer, NDArray x) { }

    /** Input of gate/up (the post-attention-normed hidden state), [B, T, hidden]. */
    default void mlpInput(int layer, NDArray normed) { }

    /** Input of down_proj (silu(gate) x up), [B, T, intermediate]. */
    default void downProjInput(int layer, NDArray x) { }
}
