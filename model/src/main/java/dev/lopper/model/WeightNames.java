package dev.lopper.model;

/** HF tensor names of a LLaMA-family checkpoint. Every other class asks here rather than spelling names. */
public final class WeightNames {
    public static final String EMBED = "model.embed_tokens.weight";
    public static final String FINAL_NORM = "model.norm.weight";
    public static final String LM_HEAD = "lm_head.weight";

    private WeightNames() {
    }

    /**
     * The output projection's tensor, HF's rule: the embedding where the config ties them and the checkpoint has
     * no lm_head (a tied checkpoint may still store one: then that one), else lm_head.
     */
    public static String head(dev.lopper.model.config.ModelConfig config, dev.lopper.model.io.TensorSource source) {
        return config.tieWordEmbeddings() && !source.has(LM_HEAD) ? EMBED : LM_HEAD;
    }

    public static String layerPrefix(int layer) {
        return "model.layers." + layer + ".";
    }

    public static String inputNorm(int layer) {
        return layerPrefix(layer) + "input_layernorm.weight";
    }

    public static String postAttentionNorm(int layer) {
        return layerPrefix(layer) + "post_attention_layernorm.weight";
    }

    /** {@code proj} is one of q_proj, k_proj, v_proj, o_proj. */
    public static String attn(int layer, String proj, String param) {
        return layerPrefix(layer) + "self_attn." + proj + "." + param;
    }

    /** Qwen3's RMSNorm weight over head_dim applied to every query head. */
    public static String qNorm(int layer) {
        return layerPrefix(layer) + "self_attn.q_norm.weight";
    }

    /** Qwen3's RMSNorm weight over head_dim applied to every key head. */
    public static String kNorm(int layer) {
        return layerPrefix(layer) + "self_attn.k_norm.weight";
    }

    /** Phi-3's fused projection: q rows, then k rows, then v rows. */
    public static String qkv(int layer) {
        return layerPrefix(layer) + "self_attn.qkv_proj.weight";
    }

    /** Phi-3's fused MLP input projection: gate rows, then up rows. */
    public static String gateUp(int layer) {
        return layerPrefix(layer) + "mlp.gate_up_proj.weight";
    }

    /** {@code proj} is one of gate_proj, up_proj, down_proj. */
    public static String mlp(int layer, String proj, String param) {
        return layerPrefix(layer) + "mlp." + proj + "." + param;
    }

    /**
     * The layer index of a per-layer tensor name ({@code model.layers.N.*}), or -1 for any other name (also
     * {@code model.layers.x.*}, which no family writes). An index too large for an int is
     * {@link Integer#MAX_VALUE}, so that it counts as past every layer rather than failing here.
     */
    public static int layerOf(String name) {
        if (!name.startsWith("model.layers.")) {
            return -1;
        }
        int start = "model.layers.".length();
        int dot = name.indexOf('.', start);
        if (dot <= start) {
            return -1;
        }
        long index = 0;
        for (int i = start; i < dot; i++) {
            char c = name.charAt(i);
            if (c < '0' || c > '9') {
                return -1;
            }
            index = Math.min(Integer.MAX_VALUE, index * 10 + (c - '0'));
        }
        return (int) index;
    }
}
