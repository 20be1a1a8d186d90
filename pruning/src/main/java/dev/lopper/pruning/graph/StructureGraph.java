package dev.lopper.pruning.graph;

import dev.lopper.model.WeightNames;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

import java.util.ArrayList;
import java.util.List;

/**
 * Which weights of a LLaMA-family model must be removed together. This is the ONLY place in Lopper that knows
 * the coupling; criteria score the structures listed here, surgery cuts them, tests zero them.
 *
 * <p>Per decoder layer there are four kinds of structure ({@link Kind}); each kind is a {@link StructureSet}: a
 * count of units and the member tensors they span. Unit {@code i} of a set covers, in each member tensor, the
 * index range {@code [i * width, (i + 1) * width)} along the member's axis (axis 0 = rows = output features,
 * axis 1 = columns = input features, HF layout [out, in]). Because every member is strided the same way, a
 * criterion can score all units of a set at once by reshaping the member tensor to [count, ...].
 *
 * <p>RMSNorm weights, embeddings, the LM head and the o_proj/down_proj biases (FLAP's compensation biases) live on
 * the hidden dimension, which every residual add couples across the whole model (Torch-Pruning's one model-wide
 * hidden-size group): they are cut only by the {@link Kind#HIDDEN_CHANNEL} structure ({@link #hiddenChannels}),
 * one unit per residual channel, uniform across layers because it is one stream.
 */
public final class StructureGraph {
    /** The kinds of structure. */
    public enum Kind {
        /**
         * A GQA key/value group: its head_dim rows of k_proj and v_proj (and biases), the rows of its
         * {@code groupSize} query heads in q_proj (and bias) and the matching columns of o_proj. With MHA a group
         * is one head. Removing it keeps the layer a valid GQA layer with the same group size.
         */
        KV_GROUP,
        /**
         * One query head: its head_dim rows of q_proj (and bias) and columns of o_proj; its KV group stays. A
         * valid GQA layer needs every group to keep the same number of query heads (see {@link #groupOf}).
         */
        QUERY_HEAD,
        /** One MLP channel: row i of gate_proj and up_proj, column i of down_proj. */
        MLP_CHANNEL,
        /** A whole decoder layer (every tensor under {@code model.layers.N.}); one unit. */
        LAYER,
        /**
         * One residual-stream channel c, model-wide: embed_tokens[:, c], every hidden-size RMSNorm weight's [c]
         * (input, post-attention, final), the input columns [:, c] of q/k/v/gate/up, the output rows [c, :] of
         * o_proj/down_proj and of their compensation biases, and lm_head[:, c] (once when tied). Listed with layer -1.
         */
        HIDDEN_CHANNEL
    }

    /**
     * A tensor taking part in a structure.
     *
     * @param tensor HF tensor name ({@link WeightNames})
     * @param axis the axis cut (0 rows, 1 columns), or -1 for the whole tensor (layer removal)
     * @param width indices along {@code axis} per unit
     * @param cross elements per index along the other axis (hidden size for a matrix, 1 for a bias), so one unit
     *              holds {@code width * cross} parameters of this tensor
     */
    public record Member(String tensor, int axis, long width, long cross) {
        /** First index of unit {@code unit} along {@link #axis}. */
        public long start(int unit) {
            return unit * width;
        }

        /** One past the last index of unit {@code unit}. */
        public long end(int unit) {
            return (unit + 1) * width;
        }

        public long parametersPerUnit() {
            return width * cross;
        }
    }

    /**
     * All units of one kind in one layer.
     *
     * @param count number of units (KV groups, query heads, channels; 1 for a layer)
     * @param members the tensors each unit spans
     */
    public record StructureSet(Kind kind, int layer, int count, List<Member> members) {
        public StructureSet {
            members = List.copyOf(members);
        }

        /** Parameters removed with one unit. */
        public long parametersPerUnit() {
            return members.stream().mapToLong(Member::parametersPerUnit).sum();
        }

        /**
         * Sums {@code elementwise(tensor)} (an array of the tensor's shape, e.g. {@code |W * dL/dW|}) over each unit:
         * per member, the unit's {@code width} rows (axis 0) or columns (axis 1), all of the other axis; in fp64.
         */
        public double[] sumPerUnit(java.util.function.Function<String, ai.djl.ndarray.NDArray> elementwise) {
            double[] out = new double[count];
            for (Member m : members) {
                ai.djl.ndarray.NDArray e = elementwise.apply(m.tensor());
                ai.djl.ndarray.NDArray line = e.getShape().dimension() == 1 ? e : e.sum(new int[] {1 - m.axis()});
                double[] v = line.toType(ai.djl.ndarray.types.DataType.FLOAT64, false).toDoubleArray();
                for (int u = 0; u < count; u++) {
                    for (long i = m.start(u); i < m.end(u); i++) {
                        out[u] += v[(int) i];
                    }
                }
            }
            return out;
        }
    }

    private final ModelConfig config;

    private StructureGraph(ModelConfig config) {
        this.config = config;
    }

    /** The graph of a model as it is now (layers may already differ in shape). */
    public static StructureGraph of(ModelConfig config) {
        return new StructureGraph(config);
    }

    public ModelConfig config() {
        return config;
    }

    public int numLayers() {
        return config.numLayers();
    }

    /** The units of {@code kind} in {@code layer}. */
    public StructureSet set(Kind kind, int layer) {
        return switch (kind) {
            case KV_GROUP -> kvGroups(layer);
            case QUERY_HEAD -> queryHeads(layer);
            case MLP_CHANNEL -> mlpChannels(layer);
            case LAYER -> layer(layer);
            case HIDDEN_CHANNEL -> hiddenChannels();
        };
    }

    /**
     * The residual-stream channels: one unit per hidden channel, spanning every tensor that has a hidden axis
     * ({@link Kind#HIDDEN_CHANNEL}); the set's layer is -1 (it is one stream through every layer).
     */
    public StructureSet hiddenChannels() {
        List<Member> m = new ArrayList<>();
        long v = config.vocabSize();
        m.add(new Member(WeightNames.EMBED, 1, 1, v));
        for (int i = 0; i < config.numLayers(); i++) {
            for (Tensor t : layerTensors(i)) {
                if (t.hiddenAxis() >= 0) {
                    m.add(new Member(t.name(), t.hiddenAxis(), 1, t.elements() / config.hiddenSize()));
                }
            }
        }
        m.add(new Member(WeightNames.FINAL_NORM, 0, 1, 1));
        if (!config.tieWordEmbeddings()) {
            m.add(new Member(WeightNames.LM_HEAD, 1, 1, v));
        }
        return new StructureSet(Kind.HIDDEN_CHANNEL, -1, config.hiddenSize(), m);
    }

    /** KV groups of a layer: k/v rows, the group's query-head rows of q, o columns (and q/k/v biases). */
    public StructureSet kvGroups(int layer) {
        LayerShape s = config.layer(layer);
        long d = config.headDim();
        long h = config.hiddenSize();
        long qWidth = d * s.groupSize();
        List<Member> m = new ArrayList<>();
        m.add(new Member(WeightNames.attn(layer, "q_proj", "weight"), 0, qWidth, h));
        m.add(new Member(WeightNames.attn(layer, "k_proj", "weight"), 0, d, h));
        m.add(new Member(WeightNames.attn(layer, "v_proj", "weight"), 0, d, h));
        if (config.qkvBias()) {
            m.add(new Member(WeightNames.attn(layer, "q_proj", "bias"), 0, qWidth, 1));
            m.add(new Member(WeightNames.attn(layer, "k_proj", "bias"), 0, d, 1));
            m.add(new Member(WeightNames.attn(layer, "v_proj", "bias"), 0, d, 1));
        }
        m.add(new Member(WeightNames.attn(layer, "o_proj", "weight"), 1, qWidth, h));
        return new StructureSet(Kind.KV_GROUP, layer, s.numKvHeads(), m);
    }

    /** Query heads of a layer: q rows (and bias), o columns. Head j belongs to KV group {@link #groupOf}. */
    public StructureSet queryHeads(int layer) {
        LayerShape s = config.layer(layer);
        long d = config.headDim();
        long h = config.hiddenSize();
        List<Member> m = new ArrayList<>();
        m.add(new Member(WeightNames.attn(layer, "q_proj", "weight"), 0, d, h));
        if (config.qkvBias()) {
            m.add(new Member(WeightNames.attn(layer, "q_proj", "bias"), 0, d, 1));
        }
        m.add(new Member(WeightNames.attn(layer, "o_proj", "weight"), 1, d, h));
        return new StructureSet(Kind.QUERY_HEAD, layer, s.numHeads(), m);
    }

    /** MLP channels of a layer: gate/up rows, down columns. */
    public StructureSet mlpChannels(int layer) {
        LayerShape s = config.layer(layer);
        long h = config.hiddenSize();
        return new StructureSet(Kind.MLP_CHANNEL, layer, s.intermediateSize(), List.of(
                new Member(WeightNames.mlp(layer, "gate_proj", "weight"), 0, 1, h),
                new Member(WeightNames.mlp(layer, "up_proj", "weight"), 0, 1, h),
                new Member(WeightNames.mlp(layer, "down_proj", "weight"), 1, 1, h)));
    }

    /** The whole layer as one unit: every tensor of the layer, whole. */
    public StructureSet layer(int layer) {
        List<Member> m = new ArrayList<>();
        for (Tensor t : layerTensors(layer)) {
            m.add(new Member(t.name(), -1, 1, t.elements()));
        }
        return new StructureSet(Kind.LAYER, layer, 1, m);
    }

    /** The KV group that query head {@code head} of {@code layer} reads (HF's repeat_kv: contiguous heads). */
    public int groupOf(int layer, int head) {
        return head / config.layer(layer).groupSize();
    }

    /**
     * One tensor of a layer and how it is sliced.
     *
     * @param headAxis axis indexed by query-head rows/columns (q rows, o columns), or -1
     * @param kvAxis axis indexed by KV-head rows (k, v), or -1
     * @param channelAxis axis indexed by MLP channels (gate/up rows, down columns), or -1
     * @param elements parameter count of the tensor
     * @param hiddenAxis axis indexed by residual-stream channels (norm weights and o/down rows and biases: 0; q/k/v/
     *                   gate/up columns: 1), or -1
     */
    public record Tensor(String name, int headAxis, int kvAxis, int channelAxis, long elements, int hiddenAxis) {
        /** A tensor without a hidden axis. */
        public Tensor(String name, int headAxis, int kvAxis, int channelAxis, long elements) {
            this(name, headAxis, kvAxis, channelAxis, elements, -1);
        }

        /** Never sliced by heads, KV groups or MLP channels: norms, o_proj/down_proj biases (over the hidden dimension). */
        public boolean whole() {
            return headAxis < 0 && kvAxis < 0 && channelAxis < 0;
        }
    }

    /**
     * Every tensor of a layer, with the axis each structure kind cuts. Surgery walks this list; it must agree with
     * the sets above (a test checks that it does).
     */
    public List<Tensor> layerTensors(int layer) {
        LayerShape s = config.layer(layer);
        long h = config.hiddenSize();
        long q = (long) s.numHeads() * config.headDim();
        long kv = (long) s.numKvHeads() * config.headDim();
        long im = s.intermediateSize();
        List<Tensor> t = new ArrayList<>();
        t.add(new Tensor(WeightNames.inputNorm(layer), -1, -1, -1, h, 0));
        t.add(new Tensor(WeightNames.attn(layer, "q_proj", "weight"), 0, -1, -1, q * h, 1));
        t.add(new Tensor(WeightNames.attn(layer, "k_proj", "weight"), -1, 0, -1, kv * h, 1));
        t.add(new Tensor(WeightNames.attn(layer, "v_proj", "weight"), -1, 0, -1, kv * h, 1));
        if (config.qkvBias()) {
            t.add(new Tensor(WeightNames.attn(layer, "q_proj", "bias"), 0, -1, -1, q));
            t.add(new Tensor(WeightNames.attn(layer, "k_proj", "bias"), -1, 0, -1, kv));
            t.add(new Tensor(WeightNames.attn(layer, "v_proj", "bias"), -1, 0, -1, kv));
        }
        if (config.family().hasQkNorm()) {
            // Qwen3's per-head norms act on head_dim, which is never cut: shared by every head, never sliced
            t.add(new Tensor(WeightNames.qNorm(layer), -1, -1, -1, config.headDim()));
            t.add(new Tensor(WeightNames.kNorm(layer), -1, -1, -1, config.headDim()));
        }
        t.add(new Tensor(WeightNames.attn(layer, "o_proj", "weight"), 1, -1, -1, h * q, 0));
        if (s.oProjBias()) {
            t.add(new Tensor(WeightNames.attn(layer, "o_proj", "bias"), -1, -1, -1, h, 0));
        }
        t.add(new Tensor(WeightNames.postAttentionNorm(layer), -1, -1, -1, h, 0));
        t.add(new Tensor(WeightNames.mlp(layer, "gate_proj", "weight"), -1, -1, 0, im * h, 1));
        t.add(new Tensor(WeightNames.mlp(layer, "up_proj", "weight"), -1, -1, 0, im * h, 1));
        t.add(new Tensor(WeightNames.mlp(layer, "down_proj", "weight"), -1, -1, 1, h * im, 0));
        if (s.downProjBias()) {
            t.add(new Tensor(WeightNames.mlp(layer, "down_proj", "bias"), -1, -1, -1, h, 0));
        }
        return t;
    }

    /** Tensors outside every layer; never cut. */
    public List<String> globalTensors() {
        List<String> g = new ArrayList<>(List.of(WeightNames.EMBED, WeightNames.FINAL_NORM));
        if (!config.tieWordEmbeddings()) {
            g.add(WeightNames.LM_HEAD);
        }
        return g;
    }
}
