package dev.lopper.pruning.criteria;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.calibration.CalibrationData;
import dev.lopper.calibration.CalibrationEngine;
import dev.lopper.calibration.ChannelStatsCollector;
import dev.lopper.calibration.Tap;
import dev.lopper.calibration.gradient.LayerParam;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.EnumMap;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;

/**
 * GBLM-Pruner (Das et al., 2023; official code {@code VILA-Lab/GBLM-Pruner}: {@code gradient_computation.py},
 * {@code lib/prune.py::prune_gblm}), made structured; see docs/CRITERIA.md.
 *
 * <p>Per weight of a linear layer (W [out, in], x its input):
 * {@code S[i, j] = |W[i, j]| * sqrt(scaler_row_j) + |W[i, j]| * scale * sqrt(sum_n g_n[i, j]^2)}, with
 * {@code scaler_row_j = sum over all tokens of x_j^2 / N} (Wanda's statistic) and {@code scale = 100}: the official
 * l2 gradient file stores {@code sqrt(sum_n (100 g_n)^2)}, {@code g_n} the gradient of window n's own loss.
 *
 * <p>The official code prunes unstructured weights (per output row). Lopper's structured GBLM (an extension) scores
 * a structure by the <b>sum</b> of S over every weight it removes: a KV group its k/v rows, its query heads' q rows
 * and o_proj columns; a query head its q rows and o columns; an MLP channel its gate and up rows and down column;
 * a layer all seven linears. Biases and norms are not scored (the official code scores linear weights only).
 *
 * <p>Order: {@code prune_gblm} prunes each layer right after scoring it and feeds the pruned layer's output to the
 * next, so later layers' activation norms come from the pruned model, while the gradients come from
 * {@code gradient_computation.py}'s separate pass over the dense model. The default ({@code order} auto: sequential
 * with uniform allocation of heads/channels) does the same: one gradient pass over the dense model, then one
 * activation pass in Wanda-sp's sequential order ({@link SequentialOrder}). {@code order dense} (and any other
 * allocation) takes both terms from the dense model in the gradient pass's forward sweep.
 */
public final class GblmCriterion implements Criterion {
    public static final String NAME = "gblm";

    private final double scale;
    private final SequentialOrder.Order order;
    private boolean ranSequential;
    private boolean scored;

    /** @param scale the gradient scale (official {@code --scale 100}); the order is AUTO (sequential with uniform) */
    public GblmCriterion(double scale) {
        this(scale, SequentialOrder.Order.AUTO);
    }

    GblmCriterion(double scale, SequentialOrder.Order order) {
        this.scale = scale;
        this.order = order;
    }

    /** From the CLI ({@code --gblm-scale}); null for the official 100. */
    public static GblmCriterion of(String scale) {
        return of(scale, null);
    }

    /** From the CLI: {@code --gblm-scale} (null: 100) and the order sequential|dense (null: sequential with uniform). */
    public static GblmCriterion of(String scale, String order) {
        SequentialOrder.Order o = SequentialOrder.parse(order, "--wanda-order");
        try {
            return new GblmCriterion(scale == null ? 100 : Double.parseDouble(scale.trim()), o);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--gblm-scale " + scale + ": expected a number (official 100)");
        }
    }

    @Override
    public boolean prunesWhileScoring(Allocation.Options allocation) {
        return SequentialOrder.applies(order, allocation);
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public Need needs() {
        return Need.GRADIENTS;
    }

    /** The activation term's scale drifts with depth (as Wanda-sp's): scores are ranked per layer. */
    @Override
    public boolean comparableAcrossLayers() {
        return false;
    }

    /** Refuses an explicit sequential order with an allocation other than uniform heads/channels. */
    @Override
    public void check(Allocation.Options allocation) {
        if (order == SequentialOrder.Order.SEQUENTIAL) {
            SequentialOrder.require(allocation, NAME, "--wanda-order");
        }
    }

    @Override
    public Defaults defaults() {
        return new Defaults(128, 2048, "uniform", StructureGraph.Kind.KV_GROUP, 0, 0,
                "GBLM-Pruner gradient_computation.py: 128 C4 windows x 2048 (seqlen hard-coded), seed 0, --scale 100, "
                        + "l2 over samples, dense model; lib/prune.py::prune_gblm: |W|*sqrt(scaler_row) + |W|*G, layer by layer "
                        + "on the pruned model's activations (sequential); structured sum per group: Lopper's extension");
    }

    @Override
    public ObjectNode options() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("scale", scale);
        o.put("score", "sum over the structure's weights of |W|*sqrt(scaler_row_j) + |W|*scale*sqrt(sum_n g_n^2)");
        // before scoring (the settings line, the resume key) the order as asked; after it, the order that ran
        o.put("order", scored ? (ranSequential ? "sequential (official)" : "dense (one pass)") : switch (order) {
            case SEQUENTIAL -> "sequential (official)";
            case DENSE -> "dense (one pass)";
            case AUTO -> "sequential (official) with --allocation uniform, else dense";
        });
        return o;
    }

    /** The input tap of each scored linear (its scaler_row). */
    private static Tap input(LayerParam p) {
        return switch (p) {
            case Q, K, V -> Tap.ATTENTION_INPUT;
            case O -> Tap.O_PROJ_INPUT;
            case GATE, UP -> Tap.MLP_INPUT;
            case DOWN -> Tap.DOWN_PROJ_INPUT;
            default -> throw new IllegalArgumentException(p.toString());
        };
    }

    @Override
    public Scores score(ScoringContext ctx) {
        ModelConfig c = ctx.config();
        int n = c.numLayers();
        double[][] kv = new double[n][], heads = new double[n][], channels = new double[n][];
        double[] layers = new double[n];
        Allocation.Options seq = SequentialOrder.resolve(order, ctx.allocation(), NAME, "--wanda-order");
        ranSequential = seq != null;
        scored = true;
        if (seq == null) {
            // dense: both terms from the dense model, the Wanda term from the gradient pass's own forward sweep
            ChannelStatsCollector stats = new ChannelStatsCollector(EnumSet.allOf(Tap.class));
            ctx.gradients((w, g) -> {
                int l = w.index();
                Map<LayerParam, double[]> v = new EnumMap<>(LayerParam.class);
                for (LayerParam p : GradientScores.LINEARS) {
                    NDArray weight = GradientScores.weight(w, p);
                    if (weight != null) {
                        double[] sr = CalibratedCriterion.sqrt(stats.get(l, input(p)).wandaScalerRow());
                        v.put(p, perIndex(w, weight, p, sr, g.squaredGradientSum(p), layers));
                    }
                }
                structures(w.shape(), c.headDim(), v, l, kv, heads, channels);
            }, true, false, List.of(stats)); // GBLM reads only the per-sample squares (its l2 term)
            return new Scores(NAME, comparableAcrossLayers(), StructureGraph.Kind.KV_GROUP, kv, heads, channels, layers);
        }
        // sequential: gradient_computation.py's gradients of the dense model first (only the gradient term is kept,
        // per structure index), then prune_gblm's layer-by-layer pass adding the Wanda term of the pruned model
        List<Map<LayerParam, double[]>> gradTerm = new java.util.ArrayList<>(java.util.Collections.nCopies(n, null));
        ctx.gradients((w, g) -> {
            Map<LayerParam, double[]> v = new EnumMap<>(LayerParam.class);
            for (LayerParam p : GradientScores.LINEARS) {
                NDArray weight = GradientScores.weight(w, p);
                if (weight != null) {
                    v.put(p, perIndex(w, weight, p, null, g.squaredGradientSum(p), layers));
                }
            }
            gradTerm.set(w.index(), v);
        }, true, false, List.of());
        ChannelStatsCollector stats = new ChannelStatsCollector(EnumSet.allOf(Tap.class)) {
            @Override
            public void endLayer(LayerWeights w) {
                int l = w.index();
                Map<LayerParam, double[]> v = new EnumMap<>(LayerParam.class);
                for (LayerParam p : GradientScores.LINEARS) {
                    NDArray weight = GradientScores.weight(w, p);
                    if (weight != null) {
                        double[] act = perIndex(w, weight, p, CalibratedCriterion.sqrt(get(l, input(p)).wandaScalerRow()), null, layers);
                        double[] grad = gradTerm.get(l).get(p);
                        for (int i = 0; i < act.length; i++) {
                            act[i] += grad[i];
                        }
                        v.put(p, act);
                    }
                }
                structures(w.shape(), c.headDim(), v, l, kv, heads, channels);
            }

            @Override
            public LayerWeights forwardWeights(LayerWeights dense, NDManager manager) {
                int l = dense.index();
                return SequentialOrder.pruned(NAME, c, dense, kv[l], heads[l], channels[l], seq, manager);
            }
        };
        CalibrationEngine.Options options = new CalibrationEngine.Options(ctx.chunkTokens(), ctx.listener());
        if (ctx.resumeDir() != null) {
            options = options.withCheckpoints(ctx.resumeDir(), NAME);
        }
        new CalibrationEngine(c, ctx.weights(), ctx.device()).run(CalibrationData.of(ctx.calibration()), List.of(stats), options);
        return new Scores(NAME, comparableAcrossLayers(), StructureGraph.Kind.KV_GROUP, kv, heads, channels, layers);
    }

    /**
     * Per structure index of {@code p} (rows of q/k/v/gate/up, columns of o/down): the sum of
     * {@code |W| * (sqrtScalerRow_j + scale * sqrt(sqGradSum))} over the index's weights, either term left out when
     * null; the whole sum is also added to {@code layers[l]}. Row blocks of one parameter at a time, in place: the
     * fp64 temporaries stay near {@code GradientScores.BLOCK_BYTES} whatever the parameter's size.
     */
    private double[] perIndex(LayerWeights w, NDArray weight, LayerParam p, double[] sqrtScalerRow, NDArray sqGradSum, double[] layers) {
        double[] out = new double[(int) weight.getShape().get(GradientScores.cutsColumns(p) ? 1 : 0)];
        try (NDManager param = w.inputNorm().getManager().newSubManager()) {
            NDArray act = sqrtScalerRow == null ? null : param.create(sqrtScalerRow).reshape(1, sqrtScalerRow.length);
            for (long[] block : GradientScores.rowBlocks(weight)) {
                try (NDManager scope = param.newSubManager()) {
                    NDIndex rows = new NDIndex("{}:{}", block[0], block[1]);
                    NDArray absW = GradientScores.f64(weight.get(rows), scope);
                    absW = GradientScores.in(absW.abs(), scope);
                    NDArray factor;
                    if (sqGradSum != null) {
                        factor = GradientScores.in(GradientScores.f64(sqGradSum.get(rows), scope).sqrt(), scope).muli(scale);
                        if (act != null) {
                            factor = factor.addi(act);
                        }
                    } else {
                        factor = GradientScores.in(act.toType(ai.djl.ndarray.types.DataType.FLOAT64, true), scope);
                    }
                    NDArray s = GradientScores.in(absW.mul(factor), scope);
                    GradientScores.addPerIndex(s, p, block[0], out);
                    layers[w.index()] += s.sum().getDouble();
                }
            }
        }
        return out;
    }

    /** The structures' scores of layer {@code l} from its linears' per-index sums {@code v}. */
    private static void structures(LayerShape s, int hd, Map<LayerParam, double[]> v, int l, double[][] kv, double[][] heads,
                                   double[][] channels) {
        int r = s.groupSize();
        kv[l] = new double[s.numKvHeads()];
        heads[l] = new double[s.numHeads()];
        channels[l] = new double[s.intermediateSize()];
        for (int h = 0; h < s.numKvHeads(); h++) {
            kv[l][h] = range(v.get(LayerParam.Q), h * r * hd, (h + 1) * r * hd) + range(v.get(LayerParam.O), h * r * hd, (h + 1) * r * hd)
                    + range(v.get(LayerParam.K), h * hd, (h + 1) * hd) + range(v.get(LayerParam.V), h * hd, (h + 1) * hd);
        }
        for (int i = 0; i < s.numHeads(); i++) {
            heads[l][i] = range(v.get(LayerParam.Q), i * hd, (i + 1) * hd) + range(v.get(LayerParam.O), i * hd, (i + 1) * hd);
        }
        for (int c = 0; c < s.intermediateSize(); c++) {
            channels[l][c] = v.get(LayerParam.GATE)[c] + v.get(LayerParam.UP)[c] + v.get(LayerParam.DOWN)[c];
        }
    }

    private static double range(double[] v, int from, int to) {
        double sum = 0;
        for (int i = from; i < to; i++) {
            sum += v[i];
        }
        return sum;
    }
}
