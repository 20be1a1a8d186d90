package dev.lopper.pruning.criteria;

import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.surgery.PostSurgery;
import dev.lopper.pruning.surgery.BiasCompensation;
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
import java.util.Locale;

/**
 * FLAP: fluctuation-based adaptive structured pruning (An et al., AAAI 2024; official code
 * {@code CASIA-IVA-Lab/FLAP lib/prune.py::prune_flap}, {@code lib/layerwrapper.py::BiasGPT}), see
 * docs/CRITERIA.md.
 *
 * <p>Per input channel j of o_proj and down_proj (W [hidden, in]), from the dense model's activations:
 * <ul>
 *   <li>WIFV (default): {@code fluc_j * ||W[:, j]||_2^2}, with {@code fluc_j} FLAP's running-variance
 *       recurrence ({@link ChannelStats#flapFluctuation()}); IFV: {@code fluc_j}; WIFN: the Wanda-sp score.</li>
 *   <li>The attention channel metric is squared, the MLP one is not (as coded).</li>
 *   <li>Each layer's channel metrics are standardized per module ({@code (x - mean) / std}, unbiased std, over
 *       the layer's channels); a query head scores the <b>mean</b> of its standardized channels, a KV group the
 *       mean over its query heads' channels.</li>
 * </ul>
 * The scores are therefore comparable across layers and modules: {@code --allocation adaptive}
 * ({@link dev.lopper.pruning.allocation.AdaptiveAllocation}) gives FLAP's AL-AM; {@code uniform} gives UL-UM (standardization is monotone per
 * layer, so the per-layer ranking equals the official sum of raw scores).
 *
 * <p>Bias compensation: the per-channel means of the o_proj and down_proj inputs are kept
 * ({@link #compensation()}); {@link BiasCompensation} turns the removed channels' means into o_proj/down_proj
 * biases after surgery.
 */
public final class FlapCriterion extends CalibratedCriterion {
    public static final String NAME = "flap";

    /** The channel metric. */
    public enum Metric { WIFV, IFV, WIFN }

    private final Metric metric;
    private final boolean compensate;
    private BiasCompensation compensation;

    public FlapCriterion(Metric metric, boolean compensate) {
        this.metric = metric;
        this.compensate = compensate;
    }

    public FlapCriterion() {
        this(Metric.WIFV, true);
    }

    /** From CLI spellings: metric wifv|ifv|wifn, compensation true|false. */
    public static FlapCriterion of(String metric, String compensate) {
        Metric m;
        try {
            m = metric == null ? Metric.WIFV : Metric.valueOf(metric.trim().toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--flap-metric " + metric + ": expected wifv, ifv or wifn");
        }
        return new FlapCriterion(m, compensate == null || Boolean.parseBoolean(compensate));
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public boolean comparableAcrossLayers() {
        return true;
    }

    /**
     * FLAP as its scripts run it: {@code --metrics WIFV --structure AL-AM --nsamples 1024} (main.py's default 2048
     * is capped by its buffer), {@code model.seqlen = 128}, every layer pruned, bias compensation on.
     */
    @Override
    public Defaults defaults() {
        return new Defaults(1024, 128, "adaptive", StructureGraph.Kind.KV_GROUP, 0, 0,
                "FLAP scripts/*.sh: --metrics WIFV --structure AL-AM --nsamples 1024; lib/prune.py: seqlen 128, compress(bias=True)");
    }

    public Metric metric() {
        return metric;
    }

    /** Whether the removed channels' mean contribution is added back as biases (FLAP's default). */
    public boolean compensates() {
        return compensate;
    }

    /** The calibration means for bias compensation, after {@link #score}; null before. */
    public BiasCompensation compensation() {
        return compensation;
    }

    @Override
    public ObjectNode options() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("metric", metric.name().toLowerCase(Locale.ROOT));
        o.put("biasCompensation", compensate);
        o.put("standardization", "per layer and module over channels, unbiased std; heads: mean of channels");
        return o;
    }

    @Override
    public Scores score(ScoringContext ctx) {
        ModelConfig c = ctx.config();
        int n = c.numLayers();
        double[][] kv = new double[n][];
        double[][] heads = new double[n][];
        double[][] channels = new double[n][];
        double[][] oMeans = new double[n][];
        double[][] downMeans = new double[n][];
        EnumSet<Tap> taps = EnumSet.of(Tap.O_PROJ_INPUT, Tap.DOWN_PROJ_INPUT);
        ChannelStatsCollector stats = new ChannelStatsCollector(taps) {
            @Override
            public void endLayer(LayerWeights w) {
                int i = w.index();
                LayerShape s = w.shape();
                ChannelStats o = get(i, Tap.O_PROJ_INPUT);
                ChannelStats d = get(i, Tap.DOWN_PROJ_INPUT);
                double[] attn = o == null ? new double[0] : attentionMetric(o, w);
                double[] z = standardize(attn);
                heads[i] = meanRuns(z, c.headDim());
                kv[i] = meanRuns(z, groupWidth(s, c.headDim()));
                channels[i] = d == null ? new double[0] : standardize(mlpMetric(d, w));
                oMeans[i] = o == null ? new double[0] : o.mean();
                downMeans[i] = d == null ? new double[0] : d.mean();
            }
        };
        calibrate(ctx, List.of(stats));
        compensation = new BiasCompensation(oMeans, downMeans);
        return new Scores(NAME, comparableAcrossLayers(), StructureGraph.Kind.KV_GROUP, kv, heads, channels, null,
                compensate ? compensation : PostSurgery.NONE);
    }

    /** The attention channel metric, squared as in the official code. */
    double[] attentionMetric(ChannelStats o, LayerWeights w) {
        double[] m = channelMetric(o, metric == Metric.WIFN ? columnAbsMean(w.o()) : columnSquareSum(w.o()));
        for (int j = 0; j < m.length; j++) {
            m[j] = m[j] * m[j];
        }
        return m;
    }

    double[] mlpMetric(ChannelStats d, LayerWeights w) {
        return channelMetric(d, metric == Metric.WIFN ? columnAbsMean(w.down()) : columnSquareSum(w.down()));
    }

    /** WIFV: fluc * ||W[:,j]||^2; IFV: fluc; WIFN: mean|W[:,j]| * sqrt(scaler_row). */
    private double[] channelMetric(ChannelStats stats, double[] weightTerm) {
        double[] out = new double[stats.channels()];
        double[] fluc = stats.flapFluctuation();
        double[] root = sqrt(stats.wandaScalerRow());
        for (int j = 0; j < out.length; j++) {
            out[j] = switch (metric) {
                case WIFV -> fluc[j] * weightTerm[j];
                case IFV -> fluc[j];
                case WIFN -> weightTerm[j] * root[j];
            };
        }
        return out;
    }

    /** (x - mean) / std with the unbiased std, as torch.std ({@link Scores#standardize}). */
    public static double[] standardize(double[] x) {
        return Scores.standardize(x);
    }
}
