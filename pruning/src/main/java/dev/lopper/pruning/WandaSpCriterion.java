package dev.lopper.pruning;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
 * <p>Deviation: statistics come from the dense model in one pass; the official code prunes layer by layer and
 * feeds the pruned layer's output forward (see docs/CRITERIA.md).
 */
public final class WandaSpCriterion extends CalibratedCriterion {
    public static final String NAME = "wanda-sp";

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public int defaultSamples() {
        return 128; // FLAP repo: get_loaders("c4", nsamples=128, ...)
    }

    @Override
    public int defaultSeqLen() {
        return 128; // FLAP repo sets model.seqlen = 128
    }

    @Override
    public ObjectNode options() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("score", "mean_i |W[i,j]| * sqrt(sum_t x_j^2 / N), heads: sum over head_dim");
        o.put("order", "dense (one pass)");
        return o;
    }

    @Override
    public Scores score(ScoringContext ctx) {
        ModelConfig c = ctx.config();
        int n = c.numLayers();
        double[][] kv = new double[n][];
        double[][] heads = new double[n][];
        double[][] channels = new double[n][];
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
        };
        calibrate(ctx, List.of(stats));
        return new Scores(NAME, false, StructureGraph.Kind.KV_GROUP, kv, heads, channels, null);
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
