package dev.lopper.pruning.criteria;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.calibration.ChannelStatsCollector;
import dev.lopper.calibration.Tap;
import dev.lopper.calibration.gradient.LayerParam;
import dev.lopper.model.config.LayerShape;
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
 */
public final class GblmCriterion implements Criterion {
    public static final String NAME = "gblm";

    private final double scale;

    /** @param scale the gradient scale (official {@code --scale 100}) */
    public GblmCriterion(double scale) {
        this.scale = scale;
    }

    /** From the CLI ({@code --gblm-scale}); null for the official 100. */
    public static GblmCriterion of(String scale) {
        try {
            return new GblmCriterion(scale == null ? 100 : Double.parseDouble(scale.trim()));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--gblm-scale " + scale + ": expected a number (official 100)");
        }
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

    @Override
    public Defaults defaults() {
        return new Defaults(128, 2048, "uniform", StructureGraph.Kind.KV_GROUP, 0, 0,
                "GBLM-Pruner gradient_computation.py: 128 C4 windows x 2048 (seqlen hard-coded), seed 0, --scale 100, "
                        + "l2 over samples; lib/prune.py::prune_gblm: |W|*sqrt(scaler_row) + |W|*G; structured sum per group: Lopper's extension");
    }

    @Override
    public ObjectNode options() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("scale", scale);
        o.put("score", "sum over the structure's weights of |W|*sqrt(scaler_row_j) + |W|*scale*sqrt(sum_n g_n^2)");
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
        int n = ctx.config().numLayers();
        int hd = ctx.config().headDim();
        double[][] kv = new double[n][], heads = new double[n][], channels = new double[n][];
        double[] layers = new double[n];
        ChannelStatsCollector stats = new ChannelStatsCollector(EnumSet.allOf(Tap.class));
        ctx.gradients((w, g) -> {
            int l = w.index();
            Map<LayerParam, double[]> v = new EnumMap<>(LayerParam.class);
            for (LayerParam p : GradientScores.LINEARS) {
                NDArray weight = GradientScores.weight(w, p);
                if (weight == null) {
                    continue;
                }
                // row blocks of one parameter at a time, in place: |W| * (sqrt(scaler_row) + scale * l2), the fp64
                // temporaries near GradientScores.BLOCK_BYTES whatever the parameter's size
                double[] sr = CalibratedCriterion.sqrt(stats.get(l, input(p)).wandaScalerRow());
                double[] perIndex = new double[(int) weight.getShape().get(GradientScores.cutsColumns(p) ? 1 : 0)];
                try (NDManager param = w.inputNorm().getManager().newSubManager()) {
                    NDArray act = param.create(sr).reshape(1, sr.length); // the same row for every block
                    for (long[] block : GradientScores.rowBlocks(weight)) {
                        try (NDManager scope = param.newSubManager()) {
                            NDIndex rows = new NDIndex("{}:{}", block[0], block[1]);
                            NDArray absW = GradientScores.f64(weight.get(rows), scope);
                            absW = GradientScores.in(absW.abs(), scope);
                            NDArray l2 = GradientScores.in(GradientScores.f64(g.squaredGradientSum(p).get(rows), scope).sqrt(), scope);
                            NDArray s = l2.muli(scale).addi(act).muli(absW);
                            GradientScores.addPerIndex(s, p, block[0], perIndex);
                            layers[l] += s.sum().getDouble();
                        }
                    }
                }
                v.put(p, perIndex);
            }
            LayerShape s = w.shape();
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
        }, true, false, List.of(stats)); // GBLM reads only the per-sample squares (its l2 term)
        return new Scores(NAME, comparableAcrossLayers(), StructureGraph.Kind.KV_GROUP, kv, heads, channels, layers);
    }

    private static double range(double[] v, int from, int to) {
        double sum = 0;
        for (int i = from; i < to; i++) {
            sum += v[i];
        }
        return sum;
    }
}
