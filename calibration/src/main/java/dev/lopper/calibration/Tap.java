package dev.lopper.calibration;

/** The activations inside a decoder layer that collectors can observe (the inputs of its linear layers). */
public enum Tap {
    /** Input of q/k/v: the input-normed hidden state, [B, T, hidden]. */
    ATTENTION_INPUT,
    /** Input of o_proj: the concatenated head outputs, [B, T, heads x headDim]. */
    O_PROJ_INPUT,
    /** Input of gate/up: the post-attention-normed hidden state, [B, T, hidden]. */
    MLP_INPUT,
    /** Input of down_proj: silu(gate) x up, [B, T, intermediate]. */
    DOWN_PROJ_INPUT
}
