package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.nn.core.Linear;
import dev.lopper.model.config.LayerShape;

/**
 * The math of one LLaMA decoder layer, shared by every family (LLaMA, Mistral, Qwen2 differ only in config and
 * biases). Stateless: weights come in as {@link LayerWeights}, so the whole model, the streaming calibration
 * engine and tests that zero weights all run exactly this code.
 *
 * <pre>
 *   h   = x + o_proj(attention(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))   n1 = rmsnorm(x)
 *   out = h + down_proj(silu(gate_proj(n2)) * up_proj(n2))                         n2 = rmsnorm(h)
 * </pre>
 */
public final class Decoder {
    private Decoder() {
    }

    /**
     * Runs one layer.
     *
     * @param x hidden states [B, T, hidden], fp32
     * @param cos rope table [T, headDim]
     * @param sin rope table [T, headDim]
     * @param mask additive attention mask broadcastable to [B, heads, T, T] (0 or -inf)
     * @param eps RMSNorm epsilon
     * @return the layer's output [B, T, hidden], in x's manager
     */
    public static NDArray layer(LayerWeights w, NDArray x, NDArray cos, NDArray sin, NDArray mask, double eps,
                                int headDim, LayerHooks hooks) {
        return layer(w, x, cos, sin, mask, eps, headDim, hooks, null);
    }

    /**
     * Runs one layer on new tokens whose past keys/values are in {@code cache} (null: no past, nothing kept);
     * then {@code mask} is [T_new, T_past + T_new].
     */
    public static NDArray layer(LayerWeights w, NDArray x, NDArray cos, NDArray sin, NDArray mask, double eps,
                                int headDim, LayerHooks hooks, KvCache cache) {
        LayerShape s = w.shape();
        NDArray h = x;
        if (s.numHeads() > 0) {
            NDArray n1 = rmsNorm(x, w.inputNorm(), eps);
            hooks.attentionInput(w.index(), n1);
            NDArray attn = attention(w, n1, cos, sin, mask, headDim, cache);
            hooks.oProjInput(w.index(), attn);
            h = x.add(linear(attn, w.o(), w.oBias()));
        } else if (w.oBias() != null) {
            h = x.add(w.oBias()); // every head pruned: only the compensation bias remains
        }
        if (s.intermediateSize() > 0) {
            NDArray n2 = rmsNorm(h, w.postNorm(), eps);
            hooks.mlpInput(w.index(), n2);
            NDArray gate = linear(n2, w.gate(), null);
            NDArray act = Activation.sigmoid(gate).mul(gate).mul(linear(n2, w.up(), null));
            hooks.downProjInput(w.index(), act);
            return h.add(linear(act, w.down(), w.downBias()));
        }
        return w.downBias() != null ? h.add(w.downBias()) : h;
    }

    /** Grouped-query causal self-attention; returns the concatenated head outputs [B, T, heads x headDim]. */
    static NDArray attention(LayerWeights w, NDArray n1, NDArray cos, NDArray sin, NDArray mask, int headDim,
                             KvCache cache) {
        LayerShape s = w.shape();
        Shape in = n1.getShape();
        long b = in.get(0);
        long t = in.get(1);
        NDArray q = linear(n1, w.q(), w.qBias()).reshape(b, t, s.numHeads(), headDim).transpose(0, 2, 1, 3);
        NDArray k = linear(n1, w.k(), w.kBias()).reshape(b, t, s.numKvHeads(), headDim).transpose(0, 2, 1, 3);
        NDArray v = linear(n1, w.v(), w.vBias()).reshape(b, t, s.numKvHeads(), headDim).transpose(0, 2, 1, 3);
        q = Rope.apply(q, cos, sin);
        k = Rope.apply(k, cos, sin);
        if (cache != null) {
            NDArray[] all = cache.append(w.index(), k, v, n1.getManager());
            k = all[0];
            v = all[1];
        }
        if (s.groupSize() > 1) {
            // query head j reads KV head j / groupSize (HF's repeat_kv = repeat_interleave on the head axis)
            k = k.repeat(1, s.groupSize());
            v = v.repeat(1, s.groupSize());
        }
        NDArray scores = q.matMul(k.transpose(0, 1, 3, 2)).mul(1.0 / Math.sqrt(headDim)).add(mask);
        NDArray out = scores.softmax(-1).matMul(v); // [B, H, T, D]
        return out.transpose(0, 2, 1, 3).reshape(b, t, (long) s.numHeads() * headDim);
    }

    /** RMSNorm in fp32, as HF's LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * weight. */
    public static NDArray rmsNorm(NDArray x, NDArray weight, double eps) {
        NDArray rms = x.square().mean(new int[] {-1}, true).add(eps).sqrt();
        return x.div(rms).mul(weight);
    }

    /** y = x W^T + b. */
    public static NDArray linear(NDArray x, NDArray weight, NDArray bias) {
        NDList out = bias == null ? Linear.linear(x, weight) : Linear.linear(x, weight, bias);
        return out.singletonOrThrow();
    }
}
