package dev.lopper.pruning.allocation;

import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;

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
 * <p>Incremental use (Adapt-Accel, one step of a prune -> train schedule on the original model's indices): units
 * earlier steps removed arrive scored -infinity; a layer's sparsity so far is the fraction of them, every layer
 * moves by the same increment (the one that takes the mean to {@code ratio}) minus {@code A x norm_l}, as the
 * official per-step update, and never gets back a removed unit.
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
        List<Integer> prunable = Allocation.prunableLayers(o, n);
        double[] importance = prunable.stream().mapToDouble(i -> scores.layers()[i]).toArray();
        // an incremental step sees the units earlier steps removed as -infinity scores: each layer starts from where it is
        double[] before = new double[prunable.size()];
        for (int p = 0; p < before.length; p++) {
            before[p] = pruned(scores, unit, prunable.get(p), o.channels() && c.layer(prunable.get(p)).intermediateSize() > 0);
        }
        double[] sh = sparsities(before, importance, o.headRatio() != null ? o.headRatio() : o.ratio(), amplitude);
        double[] sc = sparsities(before, importance, o.channelRatio() != null ? o.channelRatio() : o.ratio(), amplitude);
        return Allocation.removeLowest(graph, scores, unit, o, prunable, (p, s, hs) -> {
            if (unit == StructureGraph.Kind.KV_GROUP) {
                return Math.min(Math.max(removed(s.numKvHeads(), c.headDim(), sh[p]), gone(hs, 0, hs.length)), s.numKvHeads() - 1);
            }
            int k = removed(s.groupSize(), c.headDim(), sh[p]);
            for (int g = 0; g < s.numKvHeads(); g++) {
                k = Math.max(k, gone(hs, g * s.groupSize(), (g + 1) * s.groupSize()));
            }
            return Math.min(k, s.groupSize() - 1);
        }, (p, s, cs) -> Math.min(Math.max(removed(s.intermediateSize(), 1, sc[p]), gone(cs, 0, cs.length)), s.intermediateSize() - 1));
    }

    /**
     * The fraction of layer {@code i} that earlier steps removed (scores of -infinity): of its channels when
     * channels are pruned, else of its head units; 0 for a dense model.
     */
    private static double pruned(Scores scores, StructureGraph.Kind unit, int i, boolean channels) {
        double[] v = channels ? scores.channels()[i] : scores.of(unit) == null ? null : scores.of(unit)[i];
        return v == null || v.length == 0 ? 0 : (double) gone(v, 0, v.length) / v.length;
    }

    private static int gone(double[] v, int from, int to) {
        int k = 0;
        for (int j = from; j < to; j++) {
            if (v[j] == Double.NEGATIVE_INFINITY) {
                k++;
            }
        }
        return k;
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

    /** Per-layer sparsity {@code clamp(ratio - amplitude x normalized(I)_l, 0, 0.99)} of a dense model. */
    public static double[] sparsities(double[] importance, double ratio, double amplitude) {
        return sparsities(new double[importance.length], importance, ratio, amplitude);
    }

    /**
     * Per-layer sparsity of an incremental step: the official update {@code s_l = clamp(s_l' + increment - amplitude
     * x normalized(I)_l, 0, 0.99)}, with {@code s_l'} the layer's sparsity so far ({@code before}) and the increment
     * the one that brings the mean from {@code mean(before)} to {@code ratio}. With {@code before} all zero it is
     * the one-shot {@code ratio - amplitude x normalized(I)_l}.
     */
    public static double[] sparsities(double[] before, double[] importance, double ratio, double amplitude) {
        double[] norm = normalized(importance);
        double mean = 0;
        for (double b : before) {
            mean += b;
        }
        mean /= before.length;
        double[] s = new double[norm.length];
        for (int i = 0; i < s.length; i++) {
            s[i] = ratio == 0 ? 0 : Math.max(0, Math.min(MAX_SPARSITY, before[i] + (ratio - mean) - amplitude * norm[i]));
        }
        return s;
    }
}
