package dev.lopper.pruning.allocation;

import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.ArrayList;
import java.util.List;

/**
 * {@code --allocation adapt-pruner}: Adapt-Pruner's layer-wise adaptive sparsity (Pan et al. 2025, arXiv
 * 2502.03460; official code {@code research4pan/AdaptPruner},
 * {@code LLMPruner/torch_pruning/pruner/algorithms/metapruner.py::estimate_layer_importance} and
 * {@code adaptive_update_prune_distribution}). Each prunable layer's importance is how much it changes its input,
 * {@code I_l = sum over calibration tokens of 1 - cos(x_in, x_out)} ({@link LayerImportance}; the official
 * {@code -cos} differs by a constant, which the centring removes). It is centred on the prunable layers' mean and
 * divided by the largest absolute deviation ({@link #normalized}, in [-1, 1]); layer l then loses
 * {@code s_l = clamp(ratio - A x norm_l, 0, 0.99)} of its head units and of its MLP channels ({@link #sparsities};
 * A = {@value #DEFAULT_AMPLITUDE}, the released scripts' {@code --layer_prune_distribution_amplitude}). Layers
 * that change their input little lose more; without clamping the mean sparsity over layers is exactly
 * {@code ratio}.
 *
 * <p>Counting follows the official {@code prune_local}: a module of C output channels keeps
 * {@code int(C x (1 - s))}, so {@code C - int(C x (1 - s))} channels go; head units (KV groups, or query heads
 * inside every group) are pruned in runs of {@code head_dim} channels, so {@code (u x hd - int(u x hd x (1 - s)))
 * / hd} units go. Every layer keeps at least one head unit and one channel. The within-layer choice is the
 * criterion's (any criterion); {@link Scores#layers()} must carry the layer importances, which the
 * {@link dev.lopper.pruning.Pruner} fills in when a strategy {@link #needsLayerImportance() asks for them}.
 *
 * <pre>{@code
 * Scores s = scores.withLayers(LayerImportance.measure(config, weights, Device.cpu(), windows, 512, progress));
 * Allocation.allocate(graph, s, Allocation.Options.of(0.2, Set.of("heads", "channels"), "adapt-pruner"));
 * }</pre>
 */
public final class AdaptPrunerAllocation implements Allocation.Strategy {
    /** {@code --layer_prune_distribution_amplitude} of every released experiment script (hf_prune.py's default is 0.03). */
    public static final double DEFAULT_AMPLITUDE = 0.02;
    /** Upper bound on a layer's sparsity in the official update ({@code min(..., 0.99)}). */
    public static final double MAX_SPARSITY = 0.99;

    private final double amplitude;

    public AdaptPrunerAllocation(double amplitude) {
        if (!(amplitude >= 0 && amplitude < 1)) {
            throw new IllegalArgumentException("adapt-pruner amplitude " + amplitude + ": expected a number in [0, 1)");
        }
        this.amplitude = amplitude;
    }

    public AdaptPrunerAllocation() {
        this(DEFAULT_AMPLITUDE);
    }

    public double amplitude() {
        return amplitude;
    }

    @Override
    public boolean needsLayerImportance() {
        return true;
    }

    @Override
    public List<LayerSelection> select(StructureGraph graph, Scores scores, Allocation.Options o) {
        if (o.layers()) {
            throw new IllegalArgumentException("--allocation adapt-pruner prunes heads and channels, not whole layers; "
                    + "use --allocation uniform or global for target 'layers'");
        }
        if (scores.layers() == null) {
            throw new IllegalArgumentException("--allocation adapt-pruner needs each layer's importance (1 - cos of its input and "
                    + "output); none was measured for criterion " + scores.criterion());
        }
        StructureGraph.Kind unit = o.headUnit() != null ? o.headUnit() : scores.headUnit();
        ModelConfig c = graph.config();
        int n = graph.numLayers();
        List<Integer> prunable = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (o.prunable(i, n)) {
                prunable.add(i);
            }
        }
        double[] importance = prunable.stream().mapToDouble(i -> scores.layers()[i]).toArray();
        double[] sh = sparsities(importance, o.headRatio() != null ? o.headRatio() : o.ratio(), amplitude);
        double[] sc = sparsities(importance, o.channelRatio() != null ? o.channelRatio() : o.ratio(), amplitude);
        List<LayerSelection> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(LayerSelection.whole(i, c.layer(i)));
        }
        for (int p = 0; p < prunable.size(); p++) {
            int i = prunable.get(p);
            LayerShape s = c.layer(i);
            int[] groups = LayerSelection.range(s.numKvHeads());
            int[] heads = LayerSelection.range(s.numHeads());
            if (o.heads() && s.numHeads() > 0) {
                double[] hs = Allocation.headScores(scores, unit)[i];
                if (unit == StructureGraph.Kind.KV_GROUP) {
                    int k = Math.min(removed(s.numKvHeads(), c.headDim(), sh[p]), s.numKvHeads() - 1);
                    groups = Allocation.complement(s.numKvHeads(), Allocation.lowest(hs, k));
                    heads = Allocation.headsOfGroups(s, groups);
                } else {
                    heads = UniformAllocation.keepPerGroup(s, hs, Math.min(removed(s.groupSize(), c.headDim(), sh[p]), s.groupSize() - 1));
                }
            }
            int[] channels = LayerSelection.range(s.intermediateSize());
            if (o.channels() && s.intermediateSize() > 0) {
                int d = s.intermediateSize();
                int k = Math.min(removed(d, 1, sc[p]), d - 1);
                channels = Allocation.complement(d, Allocation.lowest(scores.channels()[i], k));
            }
            out.set(i, new LayerSelection(i, false, groups, heads, channels));
        }
        return out;
    }

    /**
     * Units removed of {@code units}, each {@code width} channels wide, at sparsity {@code s}: the official
     * {@code n_pruned = C - int(C x (1 - s))} channels with {@code C = units x width}, in whole units
     * ({@code n_pruned // width}).
     */
    public static int removed(int units, int width, double s) {
        long ch = (long) units * width;
        long gone = ch - (long) (ch * (1 - s));
        return (int) (gone / width);
    }

    /**
     * The official normalization: {@code (I_l - mean) / max_l |I_l - mean|}; all zeros when every layer is alike.
     */
    public static double[] normalized(double[] importance) {
        int n = importance.length;
        double mean = 0;
        for (double v : importance) {
            mean += v;
        }
        mean /= n;
        double max = 0;
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            out[i] = importance[i] - mean;
            max = Math.max(max, Math.abs(out[i]));
        }
        if (max > 0) {
            for (int i = 0; i < n; i++) {
                out[i] /= max;
            }
        }
        return out;
    }

    /** Per-layer sparsity {@code clamp(ratio - amplitude x normalized(I)_l, 0, 0.99)}. */
    public static double[] sparsities(double[] importance, double ratio, double amplitude) {
        double[] norm = normalized(importance);
        double[] s = new double[norm.length];
        for (int i = 0; i < s.length; i++) {
            s[i] = ratio == 0 ? 0 : Math.max(0, Math.min(MAX_SPARSITY, ratio - amplitude * norm[i]));
        }
        return s;
    }
}
