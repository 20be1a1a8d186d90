package dev.lopper.model.layer;

import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.layer.LayerOp.Add;
import dev.lopper.model.layer.LayerOp.AddParam;
import dev.lopper.model.layer.LayerOp.Attention;
import dev.lopper.model.layer.LayerOp.Hook;
import dev.lopper.model.layer.LayerOp.Linear;
import dev.lopper.model.layer.LayerOp.RmsNorm;
import dev.lopper.model.layer.LayerOp.Rope;
import dev.lopper.model.layer.LayerOp.SplitHeads;
import dev.lopper.model.layer.LayerOp.SwiGlu;
import dev.lopper.model.layer.LayerOp.Tap;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The one definition of a decoder layer: its weights (role -> shape) and the ordered ops that compute it, built
 * from the family's options and the layer's (possibly pruned) shape. The DJL decoder, the ONNX exporter and the
 * TorchScript exporter each translate these ops; none of them spells out the layer itself, so a family
 * difference (Qwen3's q/k RMSNorm) is written here once and once per op translation.
 *
 * <pre>
 *   n1 = rmsnorm(x); q = rope([qnorm](heads(q_proj(n1)))); k = rope([knorm](heads(k_proj(n1)))); v = heads(v_proj(n1))
 *   h  = x + o_proj(attention(q, k, v))                 (x + o_bias when every head is pruned)
 *   n2 = rmsnorm(h); out = h + down_proj(silu(gate_proj(n2)) * up_proj(n2))   (h + down_bias when no channel is left)
 * </pre>
 *
 * @param params every weight of the layer with its shape, in checkpoint order (also ones no op reads, such as the
 *               zero-row projections of a layer whose heads are all pruned)
 * @param output the value holding the layer's output ({@link #INPUT} when the layer does nothing)
 */
public record LayerSpec(int layer, LayerShape shape, int headDim, Map<Param, long[]> params, List<LayerOp> ops,
                        String output) {
    /** The name of the layer's input value. */
    public static final String INPUT = "x";

    public LayerSpec {
        params = Collections.unmodifiableMap(new LinkedHashMap<>(params));
        ops = List.copyOf(ops);
    }

    /** The description of layer {@code layer} of a model. */
    public static LayerSpec of(ModelConfig config, int layer) {
        return of(layer, config.layer(layer), config.hiddenSize(), config.headDim(), config.qkvBias(),
                config.family().hasQkNorm());
    }

    /**
     * The description of a layer from its shape and the family's options.
     *
     * @param qkvBias whether q/k/v projections carry biases
     * @param qkNorm whether q and k are RMS-normalized per head before RoPE (Qwen3)
     */
    public static LayerSpec of(int layer, LayerShape s, int hiddenSize, int headDim, boolean qkvBias, boolean qkNorm) {
        long h = hiddenSize;
        long d = headDim;
        long q = s.numHeads() * d;
        long kv = s.numKvHeads() * d;
        long im = s.intermediateSize();

        Map<Param, long[]> p = new LinkedHashMap<>();
        p.put(Param.INPUT_NORM, new long[] {h});
        p.put(Param.Q, new long[] {q, h});
        p.put(Param.K, new long[] {kv, h});
        p.put(Param.V, new long[] {kv, h});
        if (qkvBias) {
            p.put(Param.Q_BIAS, new long[] {q});
            p.put(Param.K_BIAS, new long[] {kv});
            p.put(Param.V_BIAS, new long[] {kv});
        }
        if (qkNorm) {
            p.put(Param.Q_NORM, new long[] {d});
            p.put(Param.K_NORM, new long[] {d});
        }
        p.put(Param.O, new long[] {h, q});
        if (s.oProjBias()) {
            p.put(Param.O_BIAS, new long[] {h});
        }
        p.put(Param.POST_NORM, new long[] {h});
        p.put(Param.GATE, new long[] {im, h});
        p.put(Param.UP, new long[] {im, h});
        p.put(Param.DOWN, new long[] {h, im});
        if (s.downProjBias()) {
            p.put(Param.DOWN_BIAS, new long[] {h});
        }

        List<LayerOp> ops = new ArrayList<>();
        String hidden = INPUT;
        if (s.numHeads() > 0) {
            ops.add(new RmsNorm(INPUT, Param.INPUT_NORM, "n1"));
            ops.add(new Tap(Hook.ATTENTION_INPUT, "n1"));
            String qh = projectHeads(ops, "q", Param.Q, qkvBias ? Param.Q_BIAS : null, s.numHeads(), qkNorm ? Param.Q_NORM : null);
            String kh = projectHeads(ops, "k", Param.K, qkvBias ? Param.K_BIAS : null, s.numKvHeads(), qkNorm ? Param.K_NORM : null);
            ops.add(new Linear("n1", Param.V, qkvBias ? Param.V_BIAS : null, "v_proj"));
            ops.add(new SplitHeads("v_proj", s.numKvHeads(), "v"));
            ops.add(new Rope(qh, "q"));
            ops.add(new Rope(kh, "k"));
            ops.add(new Attention("q", "k", "v", s.numHeads(), s.numKvHeads(), "attn"));
            ops.add(new Tap(Hook.O_PROJ_INPUT, "attn"));
            ops.add(new Linear("attn", Param.O, s.oProjBias() ? Param.O_BIAS : null, "o_proj"));
            ops.add(new Add(INPUT, "o_proj", "h"));
            hidden = "h";
        } else if (s.oProjBias()) {
            ops.add(new AddParam(INPUT, Param.O_BIAS, "h")); // every head pruned: only the compensation bias remains
            hidden = "h";
        }
        String out = hidden;
        if (im > 0) {
            ops.add(new RmsNorm(hidden, Param.POST_NORM, "n2"));
            ops.add(new Tap(Hook.MLP_INPUT, "n2"));
            ops.add(new Linear("n2", Param.GATE, null, "gate"));
            ops.add(new Linear("n2", Param.UP, null, "up"));
            ops.add(new SwiGlu("gate", "up", "act"));
            ops.add(new Tap(Hook.DOWN_PROJ_INPUT, "act"));
            ops.add(new Linear("act", Param.DOWN, s.downProjBias() ? Param.DOWN_BIAS : null, "down_proj"));
            ops.add(new Add(hidden, "down_proj", "out"));
            out = "out";
        } else if (s.downProjBias()) {
            ops.add(new AddParam(hidden, Param.DOWN_BIAS, "out"));
            out = "out";
        }
        return new LayerSpec(layer, s, headDim, p, ops, out);
    }

    /** projection -> heads -> optional per-head RMSNorm (Qwen3's q_norm/k_norm); returns the value before RoPE. */
    private static String projectHeads(List<LayerOp> ops, String name, Param weight, Param bias, int heads, Param norm) {
        ops.add(new Linear("n1", weight, bias, name + "_proj"));
        ops.add(new SplitHeads(name + "_proj", heads, name + "_heads"));
        if (norm == null) {
            return name + "_heads";
        }
        ops.add(new RmsNorm(name + "_heads", norm, name + "_normed"));
        return name + "_normed";
    }

    /** The shape of weight {@code p}; throws when this layer has none. */
    public long[] shapeOf(Param p) {
        long[] s = params.get(p);
        if (s == null) {
            throw new IllegalArgumentException("layer " + layer + " has no " + p);
        }
        return s.clone();
    }

    public boolean has(Param p) {
        return params.containsKey(p);
    }

    /** HF tensor name of weight {@code p} in this layer. */
    public String tensorName(Param p) {
        return p.tensorName(layer);
    }
}
