package dev.lopper.model.layer;

import dev.lopper.model.WeightNames;

/**
 * A weight of one decoder layer, by role. Every backend resolves a role to its tensor: the DJL decoder through
 * {@link dev.lopper.model.LayerWeights#get}, the exporters through {@link #tensorName}. Names are the logical
 * (unfused) HF names; a family with fused tensors (Phi-3) presents them through its weight layout.
 */
public enum Param {
    INPUT_NORM, Q, Q_BIAS, K, K_BIAS, V, V_BIAS, Q_NORM, K_NORM, O, O_BIAS, POST_NORM, GATE, UP, DOWN, DOWN_BIAS;

    /** The HF tensor name of this weight in layer {@code layer}. */
    public String tensorName(int layer) {
        return switch (this) {
            case INPUT_NORM -> WeightNames.inputNorm(layer);
            case Q -> WeightNames.attn(layer, "q_proj", "weight");
            case Q_BIAS -> WeightNames.attn(layer, "q_proj", "bias");
            case K -> WeightNames.attn(layer, "k_proj", "weight");
            case K_BIAS -> WeightNames.attn(layer, "k_proj", "bias");
            case V -> WeightNames.attn(layer, "v_proj", "weight");
            case V_BIAS -> WeightNames.attn(layer, "v_proj", "bias");
            case Q_NORM -> WeightNames.qNorm(layer);
            case K_NORM -> WeightNames.kNorm(layer);
            case O -> WeightNames.attn(layer, "o_proj", "weight");
            case O_BIAS -> WeightNames.attn(layer, "o_proj", "bias");
            case POST_NORM -> WeightNames.postAttentionNorm(layer);
            case GATE -> WeightNames.mlp(layer, "gate_proj", "weight");
            case UP -> WeightNames.mlp(layer, "up_proj", "weight");
            case DOWN -> WeightNames.mlp(layer, "down_proj", "weight");
            case DOWN_BIAS -> WeightNames.mlp(layer, "down_proj", "bias");
        };
    }
}
