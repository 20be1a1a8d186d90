package dev.lopper.model;

import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

/** Parameter counts from a config alone: the formula a pruning plan's parameter count is checked against. */
public final class ModelStats {
    private ModelStats() {
    }

    /** Parameters of one decoder layer. */
    public static long layerParameters(ModelConfig c, LayerShape s) {
        long h = c.hiddenSize();
        long q = (long) s.numHeads() * c.headDim();
        long kv = (long) s.numKvHeads() * c.headDim();
        long attn = h * q + 2 * h * kv + q * h + (c.qkvBias() ? q + 2 * kv : 0) + (s.oProjBias() ? h : 0);
        long mlp = 3 * h * s.intermediateSize() + (s.downProjBias() ? h : 0);
        long qkNorm = c.family().hasQkNorm() ? 2L * c.headDim() : 0; // Qwen3's q_norm and k_norm
        return attn + mlp + 2 * h + qkNorm; // + two RMSNorm weights
    }

    /** All parameters: embeddings, layers, final norm, and the LM head unless tied. */
    public static long parameters(ModelConfig c) {
        long total = (long) c.vocabSize() * c.hiddenSize() * (c.tieWordEmbeddings() ? 1 : 2) + c.hiddenSize();
        for (LayerShape s : c.layers()) {
            total += layerParameters(c, s);
        }
        return total;
    }
}
