package dev.lopper.pruning.criteria;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.calibration.gradient.GradientConsumer;
import dev.lopper.calibration.gradient.LayerParam;
import dev.lopper.calibration.gradient.SampleTerm;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * LLM-Pruner's Taylor importance (Ma et al., NeurIPS 2023; official code {@code horseee/LLM-Pruner}: {@code hf_prune.py},
 * {@code llama3.py}, {@code LLMPruner/pruner/hf_llama_pruner.py::TaylorImportance}), see docs/CRITERIA.md.
 *
 * <p>Per weight, with {@code G} the gradient of the mean causal-LM loss over the calibration windows and
 * {@code F = (1/N) sum_n g_n^2} (per-sample squared gradients, {@code acc_grad}): {@code param_first} and
 * {@code vectorize} {@code s = W G}; {@code param_second} {@code s = W F W}; {@code param_mix}
 * {@code s = W G - 0.5 W F W}. Per channel of each coupled linear (rows of q/k/v/gate/up, columns of o/down):
 * {@code sum |s|} ({@code param_*}) or {@code |sum s|} ({@code vectorize}). A structure reduces its linears'
 * channel vectors with the grouping strategy (sum, mean, max, prod: element-wise over the linears), then sums its
 * channels: a KV group its head_dim channels, with each of its query heads' q rows / o columns folded onto the KV
 * channel they read (HF's contiguous repeat_kv; LLM-Pruner's {@code llama3.py} folds by stride, see the notes). A
 * whole layer scores the grouping reduction of every parameter tensor's total (the same Taylor terms).
 *
 * <p>With target "hidden" (hf_prune.py {@code --channel_wise}: {@code root_module_types=[LlamaRMSNorm]}, the
 * model-wide hidden group) a residual channel c scores the grouping reduction, over every coupled tensor, of that
 * tensor's per-channel salience: {@code sum |s|} over its slice at c (norm entry, q/k/v/gate/up column, o/down row,
 * o/down bias entry), or {@code |sum s|} for vectorize. Deviation: the embedding, the final norm and the LM head,
 * also in LLM-Pruner's group, are left out: Lopper's layer-streamed gradient engine differentiates decoder layers
 * only (docs/CRITERIA.md).
 */
public final class LlmPrunerCriterion implements Criterion {
    public static final String NAME = "llm-pruner";

    /** {@code --taylor}: how a weight's salience is formed. */
    public enum Taylor { PARAM_FIRST, PARAM_SECOND, PARAM_MIX, VECTORIZE }

    /** {@code --grouping_strategy}: how the coupled linears' channel scores are combined. */
    public enum Grouping { SUM, MEAN, MAX, PROD }

    /**
     * {@code layers} option: which layers block-wise pruning leaves whole. {@code PAPER} (default): the README's and
     * the paper's LLaMA-7B command, {@code --block_*_layer_start 4 --block_*_layer_end 30} of 32 layers (first 4 and
     * last 2 kept), scaled to other depths as {@code keep_first = round(4 L / 32)}, {@code keep_last = round(2 L / 32)}
     * (halves round up; the 8-layer fixture keeps 1 and 1). {@code ARGPARSE}: hf_prune.py's argparse defaults,
     * {@code start 3 / end 31} of 32 (first 3 and last 1 kept, at any depth).
     */
    public enum Layers { PAPER, ARGPARSE }

    private final Taylor taylor;
    private final Grouping grouping;
    private final Layers layers;

    public LlmPrunerCriterion(Taylor taylor, Grouping grouping) {
        this(taylor, grouping, Layers.PAPER);
    }

    public LlmPrunerCriterion(Taylor taylor, Grouping grouping, Layers layers) {
        this.taylor = taylor;
        this.grouping = grouping;
        this.layers = layers;
    }

    /**
     * From the CLI spellings (param_first, ...; sum, ...; paper, argparse); null takes the official default
     * (hf_prune.py's argparse {@code --taylor param_first}, {@code --grouping_strategy sum}; the README's layers 4..30).
     */
    public static LlmPrunerCriterion of(String taylor, String grouping) {
        return of(taylor, grouping, null);
    }

    /** {@link #of(String, String)} with the {@code layers} option (paper or argparse). */
    public static LlmPrunerCriterion of(String taylor, String grouping, String layers) {
        return new LlmPrunerCriterion(parse(Taylor.class, taylor, Taylor.PARAM_FIRST, "--taylor"),
                parse(Grouping.class, grouping, Grouping.SUM, "--grouping"),
                parse(Layers.class, layers, Layers.PAPER, "llm-pruner layers"));
    }

    private static <E extends Enum<E>> E parse(Class<E> type, String s, E dflt, String option) {
        if (s == null) {
            return dflt;
        }
        for (E e : type.getEnumConstants()) {
            if (e.name().equalsIgnoreCase(s.trim().replace('-', '_'))) {
                return e;
            }
        }
        throw new IllegalArgumentException(option + " " + s + ": expected one of " + java.util.Arrays.stream(type.getEnumConstants())
                .map(e -> e.name().toLowerCase(Locale.ROOT)).toList());
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public Need needs() {
        return Need.GRADIENTS;
    }

    /** LLM-Pruner's --global_pruning ranks raw Taylor scores of all layers against each other. */
    @Override
    public boolean comparableAcrossLayers() {
        return true;
    }

    /** The defaults at LLaMA-7B's depth (32 layers): see {@link #defaults(ModelConfig)}. */
    @Override
    public Defaults defaults() {
        return defaults(32);
    }

    /**
     * hf_prune.py: 10 bookcorpus examples of 64 tokens ({@code --num_examples 10}, {@code get_examples(..., seq_len=64)}),
     * block-wise local pruning (uniform) counted as MetaPruner's {@code n - int(n (1 - r))}, whole KV heads under GQA
     * (llama3.py's root k_proj); layers left whole per {@link Layers} for this model's depth.
     */
    @Override
    public Defaults defaults(ModelConfig config) {
        return defaults(config.numLayers());
    }

    private Defaults defaults(int depth) {
        int first = keepFirst(layers, depth), last = keepLast(layers, depth);
        String range = layers == Layers.PAPER
                ? "README/paper --block_*_layer_start 4 --block_*_layer_end 30 of 32, scaled: keep_first round(4L/32) = " + first
                        + ", keep_last round(2L/32) = " + last
                : "hf_prune.py argparse --block_*_layer_start 3 --block_*_layer_end 31 of 32: keep_first 3, keep_last 1";
        return new Defaults(10, 64, "uniform", StructureGraph.Kind.KV_GROUP, first, last,
                "LLM-Pruner hf_prune.py: get_examples('bookcorpus', 10, seq_len=64), --block_wise, " + range
                        + ", --taylor param_first, --grouping_strategy sum; metapruner.py n_pruned = n - int(n (1 - r)); "
                        + "llama3.py: whole KV heads", Allocation.Options.LLM_PRUNER);
    }

    /** First layers left whole for {@code layers} at {@code depth}: round(4 depth / 32) (halves up), or 3. */
    public static int keepFirst(Layers layers, int depth) {
        return layers == Layers.ARGPARSE ? 3 : (int) Math.round(4.0 * depth / 32);
    }

    /** Last layers left whole for {@code layers} at {@code depth}: round(2 depth / 32) (halves up), or 1. */
    public static int keepLast(Layers layers, int depth) {
        return layers == Layers.ARGPARSE ? 1 : (int) Math.round(2.0 * depth / 32);
    }

    @Override
    public ObjectNode options() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("taylor", taylor.name().toLowerCase(Locale.ROOT));
        o.put("grouping", grouping.name().toLowerCase(Locale.ROOT));
        o.put("layers", layers.name().toLowerCase(Locale.ROOT));
        return o;
    }

    public Taylor taylor() {
        return taylor;
    }

    public Grouping grouping() {
        return grouping;
    }

    public Layers layers() {
        return layers;
    }

    @Override
    public Scores score(ScoringContext ctx) {
        int n = ctx.config().numLayers();
        int hd = ctx.config().headDim();
        double[][] kv = new double[n][], heads = new double[n][], channels = new double[n][];
        double[] layers = new double[n];
        boolean hidden = ctx.allocation() != null && ctx.allocation().hidden();
        List<double[]> hiddenMembers = new java.util.ArrayList<>(); // --channel_wise: one [hidden] vector per coupled tensor
        GradientConsumer consumer = (w, g) -> {
            int l = w.index();
            Map<LayerParam, double[]> v = new EnumMap<>(LayerParam.class);
            double[] totals = new double[g.params().size()];
            int t = 0;
            for (LayerParam p : g.params()) {
                boolean linear = List.of(GradientScores.LINEARS).contains(p) && p.of(w).getShape().dimension() == 2;
                double[] perIndex = linear && p.of(w).size() > 0 ? new double[(int) p.of(w).getShape().get(GradientScores.cutsColumns(p) ? 1 : 0)] : null;
                double total = 0;
                int hiddenAxis = hiddenAxis(p);
                double[] hv = hidden && hiddenAxis >= 0 && p.of(w).size() > 0 ? new double[ctx.config().hiddenSize()] : null;
                // row blocks of one parameter at a time: the fp64 temporaries stay near BLOCK_BYTES (an 8B layer's
                // gate_proj is 470 MB in fp64, and a layer's worth of them would double the backward's peak)
                for (long[] block : GradientScores.rowBlocks(p.of(w))) {
                    NDIndex rows = new NDIndex("{}:{}", block[0], block[1]);
                    try (NDManager scope = w.inputNorm().getManager().newSubManager()) {
                        NDArray s = taylor == Taylor.PARAM_MIX
                                ? GradientScores.f64(g.termSum(p).get(rows), scope).divi(g.samples()).muli(GradientScores.f64(p.of(w).get(rows), scope))
                                : salience(p.of(w).get(rows), taylor == Taylor.PARAM_SECOND ? null : g.gradientSum(p).get(rows),
                                        taylor == Taylor.PARAM_SECOND ? g.squaredGradientSum(p).get(rows) : null, g.samples(), scope);
                        if (taylor != Taylor.VECTORIZE) {
                            s = GradientScores.in(s.abs(), scope);
                        }
                        if (perIndex != null) {
                            GradientScores.addPerIndex(s, p, block[0], perIndex);
                        }
                        if (hv != null) {
                            addHidden(s, hiddenAxis, block[0], hv);
                        }
                        total += s.sum().getDouble();
                    }
                }
                if (perIndex != null) {
                    v.put(p, taylor == Taylor.VECTORIZE ? abs(perIndex) : perIndex);
                }
                if (hv != null) {
                    hiddenMembers.add(taylor == Taylor.VECTORIZE ? abs(hv) : hv);
                }
                totals[t++] = taylor == Taylor.VECTORIZE ? Math.abs(total) : total;
            }
            layers[l] = reduce(totals);
            LayerShape s = w.shape();
            heads[l] = new double[s.numHeads()];
            kv[l] = new double[s.numKvHeads()];
            channels[l] = new double[s.intermediateSize()];
            int r = s.groupSize();
            for (int h = 0; h < s.numKvHeads(); h++) {
                for (int d = 0; d < hd; d++) {
                    double q = 0, o = 0;
                    for (int j = 0; j < r; j++) {
                        q += v.get(LayerParam.Q)[(h * r + j) * hd + d];
                        o += v.get(LayerParam.O)[(h * r + j) * hd + d];
                    }
                    kv[l][h] += reduce(q, v.get(LayerParam.K)[h * hd + d], v.get(LayerParam.V)[h * hd + d], o);
                }
            }
            for (int i = 0; i < s.numHeads(); i++) {
                for (int d = 0; d < hd; d++) {
                    heads[l][i] += reduce(v.get(LayerParam.Q)[i * hd + d], v.get(LayerParam.O)[i * hd + d]);
                }
            }
            for (int c = 0; c < s.intermediateSize(); c++) {
                channels[l][c] = reduce(v.get(LayerParam.GATE)[c], v.get(LayerParam.UP)[c], v.get(LayerParam.DOWN)[c]);
            }
        };
        if (taylor == Taylor.PARAM_MIX) {
            // W g - W acc_grad W / 2 = W * (1/N) sum_n g_n (1 - W g_n / 2): one layer-sized sum instead of two
            ctx.gradients(consumer, (SampleTerm) (p, weight, grad) -> {
                try (NDArray factor = weight.mul(grad).muli(-0.5).addi(1)) {
                    return grad.muli(factor);
                }
            }, List.of());
        } else {
            ctx.gradients(consumer, taylor == Taylor.PARAM_SECOND, List.of()); // per-sample squares for param_second only
        }
        Scores out = new Scores(NAME, comparableAcrossLayers(), StructureGraph.Kind.KV_GROUP, kv, heads, channels, layers);
        if (hidden) {
            double[] h = new double[ctx.config().hiddenSize()];
            double[] column = new double[hiddenMembers.size()];
            for (int c = 0; c < h.length; c++) {
                for (int m = 0; m < column.length; m++) {
                    column[m] = hiddenMembers.get(m)[c];
                }
                h[c] = reduce(column);
            }
            out = out.withHidden(h);
        }
        return out;
    }

    /**
     * The axis of layer parameter {@code p} indexed by residual-stream channels (hf_prune.py {@code --channel_wise}:
     * the group rooted at the RMSNorms): 0 for the norms, o_proj/down_proj rows and their biases; 1 for the
     * q/k/v/gate/up columns; -1 for the q/k/v biases.
     */
    static int hiddenAxis(LayerParam p) {
        return switch (p) {
            case INPUT_NORM, POST_NORM, O, O_BIAS, DOWN, DOWN_BIAS -> 0;
            case Q, K, V, GATE, UP -> 1;
            default -> -1;
        };
    }

    /** Adds a block of salience (rows from {@code firstRow}) to the per-hidden-channel sums along {@code axis}. */
    private static void addHidden(NDArray s, int axis, long firstRow, double[] into) {
        if (s.getShape().dimension() == 1) {
            double[] v = s.toDoubleArray();
            for (int i = 0; i < v.length; i++) {
                into[(int) firstRow + i] += v[i];
            }
        } else if (axis == 0) {
            double[] v = s.sum(new int[] {1}).toDoubleArray();
            for (int i = 0; i < v.length; i++) {
                into[(int) firstRow + i] += v[i];
            }
        } else {
            double[] v = s.sum(new int[] {0}).toDoubleArray();
            for (int i = 0; i < v.length; i++) {
                into[i] += v[i];
            }
        }
    }

    /**
     * The per-element salience of parameter {@code p} (fp64, in {@code scope}): the sums over windows widened to
     * fp64, then divided, multiplied and combined in place (at most three fp64 copies of the parameter alive).
     */
    private NDArray salience(NDArray weight, NDArray gradSum, NDArray gradSqSum, int n, NDManager scope) {
        NDArray x = GradientScores.f64(weight, scope);
        if (taylor == Taylor.PARAM_SECOND) {
            // hf_llama_pruner.py: W * acc_grad * W, acc_grad = sum_n g_n^2 / N (no 1/2 in param_second, as coded)
            return GradientScores.f64(gradSqSum, scope).divi(n).muli(x).muli(x);
        }
        return GradientScores.f64(gradSum, scope).divi(n).muli(x); // W * grad of the mean loss
    }

    /** The grouping strategy over one channel's values from the group's linears. */
    double reduce(double... x) {
        double acc = switch (grouping) {
            case SUM, MEAN -> 0;
            case MAX -> Double.NEGATIVE_INFINITY;
            case PROD -> 1;
        };
        for (double a : x) {
            acc = switch (grouping) {
                case SUM, MEAN -> acc + a;
                case MAX -> Math.max(acc, a);
                case PROD -> acc * a;
            };
        }
        return grouping == Grouping.MEAN ? acc / x.length : acc;
    }

    private static double[] abs(double[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = Math.abs(v[i]);
        }
        return out;
    }
}
