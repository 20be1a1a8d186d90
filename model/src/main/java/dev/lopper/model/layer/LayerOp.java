package dev.lopper.model.layer;

/**
 * One step of a decoder layer. Values are named: an op reads named values and writes one (the layer's input is
 * {@link LayerSpec#INPUT}). Hidden states are [B, T, width]; head-split values are [B, heads, T, headDim].
 * Each backend (DJL {@code Decoder}, {@code OnnxExporter}, {@code TorchScriptExporter}) translates each op once.
 */
public sealed interface LayerOp {
    /** The value this op writes, or null (taps write nothing). */
    String out();

    /** RMSNorm over the last axis in fp32: {@code x / sqrt(mean(x^2) + eps) * weight}. */
    record RmsNorm(String in, Param weight, String out) implements LayerOp {
    }

    /** {@code y = x W^T (+ b)}, W [outFeatures, inFeatures] (HF layout); {@code bias} null when absent. */
    record Linear(String in, Param weight, Param bias, String out) implements LayerOp {
    }

    /** [B, T, heads * headDim] -> [B, heads, T, headDim]. */
    record SplitHeads(String in, int heads, String out) implements LayerOp {
    }

    /** Rotary embedding (rotate_half form) with the model's cos/sin tables on [B, heads, T, headDim]. */
    record Rope(String in, String out) implements LayerOp {
    }

    /**
     * Causal grouped-query attention with the model's mask (and KV cache, where the backend has one): query head
     * j reads KV head j / (heads / kvHeads); scores scaled by 1/sqrt(headDim). Writes the merged heads
     * [B, T, heads * headDim].
     */
    record Attention(String q, String k, String v, int heads, int kvHeads, String out) implements LayerOp {
    }

    /** {@code silu(gate) * up}. */
    record SwiGlu(String gate, String up, String out) implements LayerOp {
    }

    /** {@code a + b} (a residual). */
    record Add(String a, String b, String out) implements LayerOp {
    }

    /** {@code x + weight} (a bias left alone when its projection was pruned away). */
    record AddParam(String in, Param weight, String out) implements LayerOp {
    }

    /** An activation tap for calibration ({@code LayerHooks}); backends without hooks skip it. */
    record Tap(Hook hook, String in) implements LayerOp {
        @Override
        public String out() {
            return null;
        }
    }

    /** Where {@code LayerHooks} look into a layer. */
    enum Hook { ATTENTION_INPUT, O_PROJ_INPUT, MLP_INPUT, DOWN_PROJ_INPUT }
}
