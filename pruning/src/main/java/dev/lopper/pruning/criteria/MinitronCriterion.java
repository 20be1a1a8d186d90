package dev.lopper.pruning.criteria;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.calibration.StatsCollector;
import dev.lopper.calibration.Tap;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Minitron's activation-based width importance (Muralidharan et al. 2024; official code NVIDIA/TensorRT-Model-Optimizer,
 * {@code modelopt/torch/prune/plugins/mcore_minitron.py}: {@code _emb_layernorm_forward_hook},
 * {@code _estimate_hidden_size_importance}, {@code _linear_proj_forward_hook}, {@code _linear_fc2_forward_hook}).
 * For an observed activation y [samples, tokens, features], each sample's mean absolute value over its tokens is
 * squared and summed over samples, {@code A[f] = sum_s (mean_t |y[s, t, f]|)^2}, and the importance is
 * {@code sqrt(A)} (the hooks' "mean over seq_len, squared and summed over batch, square root of the sum"):
 * <ul>
 *   <li>hidden channel c: the sum of sqrt(A[c]) over every layer's input_layernorm and pre-MLP (post-attention)
 *       layernorm OUTPUTS (the final norm is not hooked);</li>
 *   <li>MLP channel: sqrt(A) of down_proj's input (linear_fc2);</li>
 *   <li>query head: the L2 norm over its head_dim channels of sqrt(A) of o_proj's input (linear_proj); the official
 *       code ranks heads inside each KV group (default head unit: query heads); a KV group scores the L2 norm over
 *       its query heads' channels (the official code's commented-out {@code group_importance}).</li>
 * </ul>
 * The sample aggregation does not depend on how samples are batched, so Lopper's chunking gives the same scores.
 * Defaults: 1024 calibration samples (the paper's), 128 tokens (Lopper's), uniform allocation (Minitron prunes every
 * layer to the same width).
 */
public final class MinitronCriterion extends CalibratedCriterion {
    public static final String NAME = "minitron";

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public boolean comparableAcrossLayers() {
        return false;
    }

    @Override
    public Defaults defaults() {
        return new Defaults(1024, 128, "uniform", StructureGraph.Kind.QUERY_HEAD, 0, 0,
                "Minitron (arXiv 2407.14679: 1024 calibration samples; NVIDIA/TensorRT-Model-Optimizer mcore_minitron.py hooks); 128 tokens is Lopper's");
    }

    @Override
    public ObjectNode options() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("aggregation", "sqrt(sum over samples of (mean over tokens of |y|)^2); hidden: summed over every layer's two norms");
        return o;
    }

    @Override
    public Scores score(ScoringContext ctx) {
        ModelConfig c = ctx.config();
        Collector col = new Collector(c.numLayers());
        calibrate(ctx, List.of(col));
        int n = c.numLayers();
        double[] hidden = new double[c.hiddenSize()];
        double[][] heads = new double[n][];
        double[][] groups = new double[n][];
        double[][] channels = new double[n][];
        for (int l = 0; l < n; l++) {
            LayerShape s = c.layer(l);
            for (Tap t : new Tap[] {Tap.ATTENTION_INPUT, Tap.MLP_INPUT}) {
                double[] a = col.acc[l].get(t);
                if (a != null) {
                    for (int j = 0; j < hidden.length; j++) {
                        hidden[j] += Math.sqrt(a[j]);
                    }
                }
            }
            double[] down = col.acc[l].get(Tap.DOWN_PROJ_INPUT);
            channels[l] = down == null ? new double[s.intermediateSize()] : sqrt(down);
            double[] o = col.acc[l].get(Tap.O_PROJ_INPUT);
            double[] sq = o == null ? new double[s.numHeads() * c.headDim()] : o; // (sqrt(A))^2 = A
            heads[l] = rootOfRuns(sq, c.headDim());
            groups[l] = rootOfRuns(sq, Math.max(1, groupWidth(s, c.headDim())));
            if (s.numHeads() == 0) {
                groups[l] = new double[s.numKvHeads()];
            }
        }
        return new Scores(NAME, false, StructureGraph.Kind.QUERY_HEAD, groups, heads, channels, null).withHidden(hidden);
    }

    /** sqrt of sums of consecutive runs: the L2 norm of sqrt(A) over each run of channels. */
    private static double[] rootOfRuns(double[] squares, int width) {
        return sqrt(sumRuns(squares, width));
    }

    /** Per layer and tap: sum over samples of (mean over tokens of |y|)^2, per feature. */
    static final class Collector implements StatsCollector {
        final Map<Tap, double[]>[] acc;

        @SuppressWarnings("unchecked")
        Collector(int layers) {
            acc = new Map[layers];
            for (int i = 0; i < layers; i++) {
                acc[i] = new EnumMap<>(Tap.class);
            }
        }

        @Override
        public Set<Tap> taps() {
            return Set.of(Tap.ATTENTION_INPUT, Tap.MLP_INPUT, Tap.O_PROJ_INPUT, Tap.DOWN_PROJ_INPUT);
        }

        @Override
        public void activation(int layer, Tap tap, NDArray x) {
            try (NDManager scope = x.getManager().newSubManager()) {
                NDArray y = x.toType(DataType.FLOAT64, true);
                y.attach(scope);
                double[] v = y.abs().mean(new int[] {1}).square().sum(new int[] {0}).toDoubleArray();
                double[] a = acc[layer].computeIfAbsent(tap, k -> new double[v.length]);
                for (int i = 0; i < v.length; i++) {
                    a[i] += v[i];
                }
            }
        }
    }
}
