package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.nn.core.Linear;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.layer.LayerOp;
import dev.lopper.model.layer.LayerSpec;

import java.util.HashMap;
import java.util.Map;

/**
 * Runs one decoder layer with DJL: the translation of {@link LayerSpec}'s ops to NDArray calls, shared by every
 * family. Stateless: weights come in as {@link LayerWeights}, so the whole model, the streaming calibration engine
 * and tests that zero weights all run exactly this code.
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
     * @param mask additive attention mask broadcastable to [B, heads, T, T] (0 or -inf); null when nothing is masked
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
        return layer(w, x, cos, sin, mask, eps, headDim, hooks, cache, ProjectionHook.NONE);
    }

    /**
     * Runs one layer with every projection's output passed through {@code projections} (LoRA adapters during
     * recovery); {@link ProjectionHook#NONE} gives exactly the plain layer.
     */
    public static NDArray layer(LayerWeights w, NDArray x, NDArray cos, NDArray sin, NDArray mask, double eps,
                                int headDim, LayerHooks hooks, KvCache cache, ProjectionHook projections) {
        // the family's options are read off the weights the layer has (q/k/v biases, Qwen3's q/k norms)
        LayerSpec spec = LayerSpec.of(w.index(), w.shape(), (int) w.inputNorm().getShape().get(0), headDim,
                w.qBias() != null, w.qNorm() != null);
        Map<String, NDArray> values = new HashMap<>();
        values.put(LayerSpec.INPUT, x);
        for (LayerOp op : spec.ops()) {
            NDArray out = null;
            if (op instanceof LayerOp.RmsNorm n) {
                out = rmsNorm(values.get(n.in()), w.get(n.weight()), eps);
            } else if (op instanceof LayerOp.Linear l) {
                NDArray in = values.get(l.in());
                out = linear(in, w.get(l.weight()), l.bias() == null ? null : w.get(l.bias()));
                if (projections != ProjectionHook.NONE) {
                    out = projections.project(w.index(), l.weight(), in, out);
                }
            } else if (op instanceof LayerOp.SplitHeads s) {
                NDArray in = values.get(s.in());
                Shape shape = in.getShape();
                out = in.reshape(shape.get(0), shape.get(1), s.heads(), headDim).transpose(0, 2, 1, 3);
            } else if (op instanceof LayerOp.Rope r) {
                out = Rope.apply(values.get(r.in()), cos, sin);
            } else if (op instanceof LayerOp.Attention a) {
                out = attention(w, values.get(a.q()), values.get(a.k()), values.get(a.v()), mask, headDim, cache, x);
            } else if (op instanceof LayerOp.SwiGlu g) {
                NDArray gate = values.get(g.gate());
                out = Activation.sigmoid(gate).mul(gate).mul(values.get(g.up()));
            } else if (op instanceof LayerOp.Add a) {
                out = values.get(a.a()).add(values.get(a.b()));
            } else if (op instanceof LayerOp.AddParam a) {
                out = values.get(a.in()).add(w.get(a.weight()));
            } else if (op instanceof LayerOp.Tap t) {
                tap(hooks, t.hook(), w.index(), values.get(t.in()));
            } else {
                throw new IllegalStateException("no DJL translation for " + op);
            }
            if (op.out() != null) {
                values.put(op.out(), out);
            }
        }
        return values.get(spec.output());
    }

    private static void tap(LayerHooks hooks, LayerOp.Hook hook, int layer, NDArray value) {
        switch (hook) {
            case ATTENTION_INPUT -> hooks.attentionInput(layer, value);
            case O_PROJ_INPUT -> hooks.oProjInput(layer, value);
            case MLP_INPUT -> hooks.mlpInput(layer, value);
            case DOWN_PROJ_INPUT -> hooks.downProjInput(layer, value);
        }
    }

    /**
     * Grouped-query causal self-attention over head-split q [B, H, T, D], k and v [B, KV, T, D] (after RoPE);
     * returns the concatenated head outputs [B, T, heads x headDim]. Keys/values go through {@code cache}.
     */
    static NDArray attention(LayerWeights w, NDArray q, NDArray k, NDArray v, NDArray mask, int headDim,
                             KvCache cache, NDArray input) {
        LayerShape s = w.shape();
        Shape in = q.getShape();
        long b = in.get(0);
        long t = in.get(2);
        if (cache != null) {
            NDArray[] all = cache.append(w.index(), k, v, input.getManager());
            k = all[0];
            v = all[1];
        }
        if (cache != null && s.groupSize() > 1) {
            return groupedAttention(q, k, v, mask, s, headDim);
        }
        if (s.groupSize() > 1) {
            // query head j reads KV head j / groupSize (HF's repeat_kv = repeat_interleave on the head axis)
            k = k.repeat(1, s.groupSize());
            v = v.repeat(1, s.groupSize());
        }
        // scores [B, H, T, T] are the largest activations (32 MiB per 512-token window at 32 heads): scaled and masked
        // in place, not copied twice (same values; autograd-safe: matmul keeps its inputs, not its output). The scale is
        // an owned constant: the backward keeps it, and DJL's muli(Number) would hand it a closed from_blob (Scalars)
        NDArray scores = q.matMul(k.transpose(0, 1, 3, 2)).muli(Scalars.of(q.getManager(), 1.0 / Math.sqrt(headDim)));
        if (mask != null) { // null: every query sees every key (a single decoding step)
            scores.addi(mask);
        }
        NDArray out = scores.softmax(-1).matMul(v); // [B, H, T, D]
        return out.transpose(0, 2, 1, 3).reshape(b, t, (long) s.numHeads() * headDim);
    }

    /**
     * Grouped-query attention without copying keys/values per query head (decoding: the repeat would copy the whole
     * cache every step): the groupSize query heads that share KV head j (heads j*g..j*g+g-1, as repeat_interleave
     * pairs them) are stacked along the query axis, q [B, H, T, D] -> [B, KV, g*T, D], and attend to KV head j's
     * keys [B, KV, Tk, D] in one batched product. Same dot products as the repeated form.
     */
    private static NDArray groupedAttention(NDArray q, NDArray k, NDArray v, NDArray mask, LayerShape s, int headDim) {
        Shape in = q.getShape();
        long b = in.get(0);
        long t = in.get(2);
        long kv = s.numKvHeads();
        long g = s.groupSize();
        NDArray scores = q.reshape(b, kv, g * t, headDim).matMul(k.transpose(0, 1, 3, 2)).mul(1.0 / Math.sqrt(headDim));
        if (mask != null) { // mask [T, Tk] applies per query position: unstack the group axis to broadcast it
            scores = scores.reshape(b, kv, g, t, -1).add(mask).reshape(b, kv, g * t, -1);
        }
        NDArray out = scores.softmax(-1).matMul(v).reshape(b, (long) s.numHeads(), t, headDim);
        return out.transpose(0, 2, 1, 3).reshape(b, t, (long) s.numHeads() * headDim);
    }

    /** RMSNorm in fp32 over the last axis, as HF's LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * weight. */
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
