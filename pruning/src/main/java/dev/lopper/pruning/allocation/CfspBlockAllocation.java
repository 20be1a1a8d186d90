package dev.lopper.pruning.allocation;

import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.List;

/**
 * {@code --allocation cfsp-blocks}: CFSP's coarse budgets (Wang et al., COLING 2025; {@code wyxscir/CFSP
 * lib/prune.py::prune_cfsp}). Per-layer keep ratios come from the block importances in {@link Scores#layers()}
 * ({@link #keepRatios}: more change between a layer's input and output, more kept); each layer keeps
 * {@code int(count * keep) + 1} channels (the official non-cuda-friendly rule) and {@code round(units * keep)}
 * head units (at least one), the highest scored. Works with any criterion that gives layer scores where higher
 * means more important.
 *
 * <pre>{@code
 * Allocation.allocate(graph, cfspScores, Allocation.Options.of(0.2, Set.of("channels"), "cfsp-blocks"));
 * }</pre>
 */
public final class CfspBlockAllocation implements Allocation.Strategy {

    @Override
    public List<LayerSelection> select(StructureGraph graph, Scores scores, Allocation.Options o) {
        if (o.layers()) {
            throw new IllegalArgumentException("--allocation cfsp-blocks prunes heads and channels, not whole layers; "
                    + "use --allocation uniform or global for target 'layers'");
        }
        if (scores.layers() == null) {
            throw new IllegalArgumentException("--allocation cfsp-blocks needs per-layer block importances, and criterion "
                    + scores.criterion() + " gives none (cfsp does)");
        }
        StructureGraph.Kind unit = o.headUnit() != null ? o.headUnit() : scores.headUnit();
        int n = graph.numLayers();
        List<Integer> prunable = Allocation.prunableLayers(o, n);
        double[] importance = prunable.stream().mapToDouble(i -> scores.layers()[i]).toArray();
        double rh = o.headRatio() != null ? o.headRatio() : o.ratio();
        double rc = o.channelRatio() != null ? o.channelRatio() : o.ratio();
        double[] keepHeads = keepRatios(importance, rh);
        double[] keepChannels = keepRatios(importance, rc);
        // official: thresh = sorted_desc[int(d * keep)], keep metric >= thresh -> int(d * keep) + 1 channels kept
        return Allocation.removeLowest(graph, scores, unit, o, prunable,
                (p, s, hs) -> unit == StructureGraph.Kind.KV_GROUP
                        ? s.numKvHeads() - clamp((int) Math.round(s.numKvHeads() * keepHeads[p]), 1, s.numKvHeads())
                        : s.groupSize() - clamp((int) Math.round(s.groupSize() * keepHeads[p]), 1, s.groupSize()),
                (p, s, cs) -> s.intermediateSize() - clamp((int) (s.intermediateSize() * keepChannels[p]) + 1, 1, s.intermediateSize()));
    }

    private static int clamp(int v, int lo, int hi) {
        return Math.max(lo, Math.min(hi, v));
    }

    /**
     * CFSP's per-layer keep ratios from block importances (the code's {@code every_pruning_ratios}): centre,
     * divide by 1e4, sigmoid (a = 1), shrink deviations if some layer would keep more than everything, and scale so
     * the mean keep ratio is {@code 1 - ratio}.
     */
    public static double[] keepRatios(double[] importance, double ratio) {
        int n = importance.length;
        if (ratio == 0) {
            double[] all = new double[n];
            java.util.Arrays.fill(all, 1);
            return all;
        }
        double mean = 0;
        for (double v : importance) {
            mean += v;
        }
        mean /= n;
        double[] li = new double[n];
        for (int i = 0; i < n; i++) {
            li[i] = 1 / (1 + Math.exp(-(importance[i] - mean) / 1e4));
        }
        double avg = mean(li);
        double max = java.util.Arrays.stream(li).max().orElse(avg);
        if (max / avg * (1 - ratio) >= 1) {
            double scale = (avg * (1 / (1 - ratio) - 1)) / (max - avg) / 1.05;
            for (int i = 0; i < n; i++) {
                li[i] = avg + (li[i] - avg) * scale;
            }
            avg = mean(li);
        }
        double[] keep = new double[n];
        for (int i = 0; i < n; i++) {
            keep[i] = li[i] / avg * (1 - ratio);
        }
        return keep;
    }

    private static double mean(double[] v) {
        double s = 0;
        for (double x : v) {
            s += x;
        }
        return s / v.length;
    }
}
