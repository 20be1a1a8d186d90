package dev.lopper.pruning.criteria;

import dev.lopper.pruning.graph.StructureGraph;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.calibration.BlockInfluence;
import dev.lopper.calibration.ChannelStats;
import dev.lopper.calibration.ChannelStatsCollector;
import dev.lopper.calibration.Tap;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

import java.util.EnumSet;
import java.util.List;

/**
 * CFSP: coarse-to-fine activation-based structured pruning (Wang et al., COLING 2025; official code
 * {@code wyxscir/CFSP lib/prune.py::prune_cfsp}, {@code lib/block_metrics.py}), see docs/CRITERIA.md. One
 * forward pass over the dense model gives both levels:
 * <ul>
 *   <li><b>Coarse</b>: each decoder layer's block importance, the angular distance between its input and output
 *       hidden states summed over tokens ({@link BlockInfluence}); {@link Scores#layers()} carries it, rescaled to
 *       the official 131072 calibration tokens (128 x 1024) so the code's {@code /1e4} sigmoid keeps its meaning
 *       for any N x L. {@link dev.lopper.pruning.allocation.AdaptiveAllocation} turns it into per-layer keep ratios (more change, more kept).</li>
 *   <li><b>Fine</b>: per MLP channel j, as coded (defaults a = b = c = 1):
 *       {@code mean_i [ |W_down[i,j]| s_j^b / sum_i' |W_down[i',j]| s_j^b + |W_up[j,i]| / sum_i' |W_up[j,i']|
 *       + |W_gate[j,i]| / sum_i' |W_gate[j,i']| ] * s_j^c}, {@code s_j = sqrt(scaler_row_j)} of the down_proj input.
 *       Every term is normalized per channel, so this equals {@code 3 s_j^c / hidden}: the ranking is the
 *       activation norm's (docs/CRITERIA-NOTES.md §3).</li>
 * </ul>
 * The official code prunes MLP channels only. Lopper's extension to heads applies the same formula to the o_proj
 * input channels with the o_proj and q_proj terms (= {@code 2 s_j^c / hidden}), summed over a head's channels.
 */
public final class CfspCriterion extends CalibratedCriterion {
    public static final String NAME = "cfsp";
    /** Calibration tokens of the official setting (128 windows x 1024), the scale its /1e4 constant assumes. */
    static final double OFFICIAL_TOKENS = 128.0 * 1024;

    private final double b;
    private final double c;

    public CfspCriterion(double b, double c) {
        this.b = b;
        this.c = c;
    }

    public CfspCriterion() {
        this(1, 1);
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public boolean comparableAcrossLayers() {
        return false;
    }

    /** CFSP as its main.py runs it: 128 windows of 1024 tokens, the coarse block budgets, every layer pruned. */
    @Override
    public Defaults defaults() {
        return new Defaults(128, 1024, "cfsp-blocks", StructureGraph.Kind.KV_GROUP, 0, 0,
                "CFSP main.py: nsamples 128, model.seqlen 1024; lib/prune.py::prune_cfsp block budgets");
    }

    @Override
    public ObjectNode options() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("globalMetric", "angular");
        o.put("localMetric", "three_w_one_wa");
        o.put("b", b);
        o.put("c", c);
        o.put("blockImportanceScale", "sum over tokens x 131072 / (N*L)");
        return o;
    }

    @Override
    public Scores score(ScoringContext ctx) {
        ModelConfig cfg = ctx.config();
        int n = cfg.numLayers();
        double[][] kv = new double[n][];
        double[][] heads = new double[n][];
        double[][] channels = new double[n][];
        BlockInfluence block = new BlockInfluence(n);
        ChannelStatsCollector stats = new ChannelStatsCollector(EnumSet.of(Tap.O_PROJ_INPUT, Tap.DOWN_PROJ_INPUT)) {
            @Override
            public void endLayer(LayerWeights w) {
                int i = w.index();
                LayerShape s = w.shape();
                ChannelStats o = get(i, Tap.O_PROJ_INPUT);
                ChannelStats d = get(i, Tap.DOWN_PROJ_INPUT);
                double[] attn = o == null ? new double[0] : fine(o, w.o(), w.q(), null);
                heads[i] = sumRuns(attn, cfg.headDim());
                kv[i] = sumRuns(attn, groupWidth(s, cfg.headDim()));
                channels[i] = d == null ? new double[0] : fine(d, w.down(), w.up(), w.gate());
            }
        };
        calibrate(ctx, List.of(stats, block));
        double[] layers = block.angular();
        long tokens = (long) ctx.calibration().length * ctx.calibration()[0].length;
        for (int i = 0; i < n; i++) {
            layers[i] *= OFFICIAL_TOKENS / tokens;
        }
        return new Scores(NAME, comparableAcrossLayers(), StructureGraph.Kind.KV_GROUP, kv, heads, channels, layers);
    }

    /**
     * The official {@code three_w_one_wa} metric, term by term: out [hidden, C] is the weight reading the channels
     * (down or o), in1/in2 [C, hidden] those producing them (up and gate, or q); in2 may be null. Since the mean
     * over rows distributes over the sum of terms, each term's column mean is computed on its own and its
     * [hidden, C] fp64 temporaries are freed before the next (at most two such matrices alive).
     */
    double[] fine(ChannelStats stats, NDArray out, NDArray in1, NDArray in2) {
        double[] s = sqrt(stats.wandaScalerRow());
        double[] sum = new double[s.length];
        try (NDManager scope = out.getManager().newSubManager()) {
            NDArray sb = scope.create(s).pow(b); // [C]
            accumulate(sum, normalizedColumnMean(out, false, sb, scope));
            for (NDArray in : new NDArray[] {in1, in2}) {
                if (in != null) {
                    accumulate(sum, normalizedColumnMean(in, true, null, scope));
                }
            }
        }
        for (int j = 0; j < sum.length; j++) {
            sum[j] *= Math.pow(s[j], c);
        }
        return sum;
    }

    /**
     * mean_i of |W'[i, j]| x scale_j / sum_i' |W'[i', j]| x scale_j, with W' = w (or w^T when {@code transpose}),
     * in fp64.
     */
    private static double[] normalizedColumnMean(NDArray w, boolean transpose, NDArray scale, NDManager scope) {
        try (NDManager local = scope.newSubManager()) {
            NDArray w64 = w.toType(DataType.FLOAT64, true);
            w64.attach(local);
            NDArray abs = (transpose ? w64.transpose() : w64).abs();
            w64.close();
            if (scale != null) {
                NDArray scaled = abs.mul(scale);
                abs.close();
                abs = scaled;
            }
            NDArray normalized = abs.div(abs.sum(new int[] {0}, true));
            abs.close();
            return normalized.mean(new int[] {0}).toDoubleArray();
        }
    }

    private static void accumulate(double[] into, double[] v) {
        for (int j = 0; j < into.length; j++) {
            into[j] += v[j];
        }
    }
}
