package dev.lopper.pruning.criteria;

import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.allocation.Allocation;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import ai.djl.ndarray.NDManager;
import dev.lopper.calibration.ChannelStats;
import dev.lopper.calibration.ChannelStatsCollector;
import dev.lopper.calibration.Tap;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

import java.util.EnumSet;
import java.util.List;

/**
 * Wanda-sp, the structured Wanda baseline of the FLAP paper (An et al., AAAI 2024; official code
 * {@code CASIA-IVA-Lab/FLAP lib/prune.py::prune_wanda_sp}), see docs/CRITERIA.md.
 *
 * <p>Per input channel j of o_proj and down_proj (W [hidden, in]):
 * {@code s_j = mean_i |W[i, j]| * sqrt(scaler_row_j)}, where {@code scaler_row_j = sum over all tokens of x_j^2
 * / N} (Wanda's statistic: ||X_j||_2 / sqrt(N) after the root). An MLP channel scores s_j; a query head the
 * <b>sum</b> of s_j over its head_dim channels; a KV group (Lopper's GQA extension) the sum over its query heads'
 * channels. Only o_proj and down_proj are looked at, as in the official code. Scores are per-layer quantities
 * (not comparable across layers): the official allocation is uniform.
 *
 * <p>Order: by default all layers are scored on the dense model in one pass. {@link #sequential} gives the
 * official order: each layer is pruned (uniform allocation, decided right after its statistics) before the batch
 * moves on, so later layers see the pruned layers' outputs (see docs/CRITERIA.md).
 */
public final class WandaSpCriterion extends CalibratedCriterion {
    public static final String NAME = "wanda-sp";

    /** The orders: official sequential, dense one-pass, or sequential exactly when the allocation is uniform. */
    public enum Order { SEQUENTIAL, DENSE, AUTO }

    private final Order order;
    private Allocation.Options sequential;
    private boolean ranSequential;
    private boolean scored;

    /** @param order SEQUENTIAL, DENSE or AUTO (sequential with uniform allocation of heads/channels, else dense) */
    public WandaSpCriterion(Order order) {
        this.order = order;
    }

    public WandaSpCriterion() {
        this(Order.AUTO);
    }

    /** From the CLI spelling sequential|dense, null for AUTO. */
    public static WandaSpCriterion of(String order) {
        return new WandaSpCriterion(Order.valueOf(SequentialOrder.parse(order, "--wanda-order").name()));
    }

    /**
     * Official order: prune each layer with these (uniform) allocation options as soon as it is scored, and feed
     * the pruned layer's output to the next one.
     */
    public WandaSpCriterion sequential(Allocation.Options uniform) {
        this.sequential = sequentialOptions(uniform);
        return this;
    }

    public boolean isSequential() {
        return sequential != null;
    }

    /** Refuses an explicit sequential order with an allocation other than uniform heads/channels. */
    @Override
    public void check(Allocation.Options allocation) {
        if (order == Order.SEQUENTIAL) {
            sequentialOptions(allocation);
        }
    }

    private static Allocation.Options sequentialOptions(Allocation.Options uniform) {
        return SequentialOrder.require(uniform, NAME, "--wanda-order");
    }

    /** The allocation to prune with while scoring, or null for the dense order. */
    private Allocation.Options sequentialFor(ScoringContext ctx) {
        if (sequential != null) {
            return sequential;
        }
        return SequentialOrder.resolve(SequentialOrder.Order.valueOf(order.name()), ctx.allocation(), NAME, "--wanda-order");
    }

    @Override
    public boolean prunesWhileScoring(Allocation.Options allocation) {
        return SequentialOrder.applies(SequentialOrder.Order.valueOf(order.name()), allocation);
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public boolean comparableAcrossLayers() {
        return false;
    }

    /** The official Wanda-sp: 128 windows of 128 tokens, uniform allocation, sequential order, every layer. */
    @Override
    public Defaults defaults() {
        return new Defaults(128, 128, "uniform", StructureGraph.Kind.KV_GROUP, 0, 0,
                "FLAP repo lib/prune.py::prune_wanda_sp: get_loaders(\"c4\", nsamples=128), seqlen 128, uniform, sequential");
    }

    @Override
    public ObjectNode options() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("score", "mean_i |W[i,j]| * sqrt(sum_t x_j^2 / N), heads: sum over head_dim");
        // before scoring (the settings line, the resume key) the order as asked; after it, the order that ran (as GBLM's)
        o.put("order", sequential != null || ranSequential ? "sequential (official)" : scored ? "dense (one pass)" : switch (order) {
            case SEQUENTIAL -> "sequential (official)";
            case DENSE -> "dense (one pass)";
            case AUTO -> "sequential (official) with --allocation uniform, else dense";
        });
        return o;
    }

    @Override
    public Scores score(ScoringContext ctx) {
        ModelConfig c = ctx.config();
        int n = c.numLayers();
        double[][] kv = new double[n][];
        double[][] heads = new double[n][];
        double[][] channels = new double[n][];
        Allocation.Options seq = sequentialFor(ctx);
        ranSequential = seq != null;
        scored = true;
        ChannelStatsCollector stats = new ChannelStatsCollector(EnumSet.of(Tap.O_PROJ_INPUT, Tap.DOWN_PROJ_INPUT)) {
            @Override
            public void endLayer(LayerWeights w) {
                int i = w.index();
                LayerShape s = w.shape();
                double[] attn = channelScores(get(i, Tap.O_PROJ_INPUT), s.numHeads() > 0 ? columnAbsMean(w.o()) : new double[0]);
                heads[i] = sumRuns(attn, c.headDim());
                kv[i] = sumRuns(attn, groupWidth(s, c.headDim()));
                channels[i] = channelScores(get(i, Tap.DOWN_PROJ_INPUT),
                        s.intermediateSize() > 0 ? columnAbsMean(w.down()) : new double[0]);
            }

            @Override
            public LayerWeights forwardWeights(LayerWeights dense, NDManager manager) {
                if (seq == null) {
                    return null;
                }
                int i = dense.index();
                return SequentialOrder.pruned(NAME, c, dense, kv[i], heads[i], channels[i], seq, manager);
            }
        };
        calibrate(ctx, List.of(stats));
        return new Scores(NAME, comparableAcrossLayers(), StructureGraph.Kind.KV_GROUP, kv, heads, channels, null);
    }

    /** s_j = colAbsMean_j * sqrt(scaler_row_j). */
    static double[] channelScores(ChannelStats stats, double[] colAbsMean) {
        if (stats == null) {
            return new double[0];
        }
        double[] root = sqrt(stats.wandaScalerRow());
        double[] out = new double[colAbsMean.length];
        for (int j = 0; j < out.length; j++) {
            out[j] = colAbsMean[j] * root[j];
        }
        return out;
    }
}
