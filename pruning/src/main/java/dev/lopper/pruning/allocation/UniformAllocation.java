package dev.lopper.pruning.allocation;

import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.model.config.LayerShape;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * FLAP's <b>UL-UM</b> (uniform layers, uniform modules): every prunable layer loses the same fraction of head
 * units (KV groups, or query heads inside every group alike) and of MLP channels, the lowest scored; each layer
 * keeps at least one head unit and one channel.
 *
 * <p>Counting rule ({@link Allocation.Options#uniformRounding()}):
 * <ul>
 * <li>{@code independent} (default): {@code int(headRatio x units)} head units and {@code int(channelRatio x
 *     channels)} channels, each truncated on its own, as FLAP's {@code prune_flap} (UL-UM), {@code prune_wanda_sp}
 *     and {@code prune_magnitude_sp} count ({@code sorted[int(ratio * n)]}, keep {@code >=}). LLaMA-7B at 0.3:
 *     9 of 32 heads, 3302 of 11008 channels.</li>
 * <li>{@code absorb}: {@code round} instead of {@code int}; when heads and channels are both targets and neither
 *     per-kind ratio is given, heads are rounded first and the channel count is chosen so that the layer loses
 *     {@code ratio} of its prunable parameters (LLaMA-7B at 0.3: 10 heads, 3234 channels).</li>
 * </ul>
 * With target "layers" (alone) it removes {@code round(ratio x prunable layers)} whole layers, the lowest scored
 * (LLM-Pruner's block-wise setting removes units, not layers; this is Lopper's).
 */
public final class UniformAllocation implements Allocation.Strategy {
    @Override
    public List<LayerSelection> select(StructureGraph graph, Scores scores, Allocation.Options o) {
        int n = graph.numLayers();
        if (o.layers()) {
            if (o.heads() || o.channels()) {
                throw new IllegalArgumentException("--allocation uniform cannot mix target 'layers' with heads/channels; "
                        + "use --allocation global, or prune layers alone");
            }
            return removeLayers(graph, scores, o);
        }
        StructureGraph.Kind unit = o.headUnit() != null ? o.headUnit() : scores.headUnit();
        double rh = o.headRatio() != null ? o.headRatio() : o.ratio();
        double rc = o.channelRatio() != null ? o.channelRatio() : o.ratio();
        List<LayerSelection> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            LayerShape s = graph.config().layer(i);
            if (!o.prunable(i, n)) {
                out.add(LayerSelection.whole(i, s));
                continue;
            }
            int[] groups = LayerSelection.range(s.numKvHeads());
            int[] heads = LayerSelection.range(s.numHeads());
            if (o.heads() && s.numHeads() > 0) {
                double[] hs = Allocation.headScores(scores, unit)[i];
                if (unit == StructureGraph.Kind.KV_GROUP) {
                    int k = Math.min(headCount(rh, s.numKvHeads(), graph.config().headDim(), o), s.numKvHeads() - 1);
                    groups = Allocation.complement(s.numKvHeads(), Allocation.lowest(hs, k));
                    heads = Allocation.headsOfGroups(s, groups);
                } else {
                    heads = keepPerGroup(s, hs, Math.min(headCount(rh, s.groupSize(), graph.config().headDim(), o), s.groupSize() - 1));
                }
            }
            int[] channels = LayerSelection.range(s.intermediateSize());
            if (o.channels() && s.intermediateSize() > 0) {
                int k = o.llmPrunerCounting() ? AdaptPrunerAllocation.removed(s.intermediateSize(), 1, rc)
                        : count(rc, s.intermediateSize(), o.absorbRounding());
                if (o.absorbRounding() && o.heads() && o.headRatio() == null && o.channelRatio() == null) {
                    // whole heads rarely hit the ratio: let the channels absorb the rounding, so that the layer
                    // loses `ratio` of its prunable parameters (e.g. 1 of 4 KV groups = 25% of attention at ratio 0.2)
                    long target = Math.round(o.ratio() * Allocation.prunable(graph.config(), s, true, true, false));
                    long headsGone = Allocation.prunable(graph.config(), s, true, false, false)
                            - Allocation.prunable(graph.config(), new LayerShape(heads.length, groups.length, 0), true, false, false);
                    k = (int) Math.max(0, Math.round((double) (target - headsGone) / graph.mlpChannels(i).parametersPerUnit()));
                }
                k = Math.min(k, s.intermediateSize() - 1);
                channels = Allocation.complement(s.intermediateSize(), Allocation.lowest(scores.channels()[i], k));
            }
            out.add(new LayerSelection(i, false, groups, heads, channels));
        }
        return out;
    }

    /**
     * Units removed of {@code n} at ratio {@code r}: {@code int(r x n)} as the official codes ({@code r * n} is
     * the same IEEE product as Python's), or {@code round(r x n)} for the absorbing rule.
     */
    public static int count(double r, int n, boolean absorb) {
        return absorb ? (int) Math.round(r * n) : (int) (r * n);
    }

    /** Head units removed of {@code n} at ratio {@code r} under {@code o}'s counting rule. */
    static int headCount(double r, int n, int headDim, Allocation.Options o) {
        return o.llmPrunerCounting() ? AdaptPrunerAllocation.removed(n, headDim, r) : count(r, n, o.absorbRounding());
    }

    /** Removes the {@code k} lowest-scored query heads of every KV group; returns the kept heads, ascending. */
    public static int[] keepPerGroup(LayerShape s, double[] headScores, int k) {
        int gs = s.groupSize();
        List<Integer> kept = new ArrayList<>();
        for (int g = 0; g < s.numKvHeads(); g++) {
            double[] local = Arrays.copyOfRange(headScores, g * gs, (g + 1) * gs);
            for (int r : Allocation.complement(gs, Allocation.lowest(local, k))) {
                kept.add(g * gs + r);
            }
        }
        return kept.stream().mapToInt(Integer::intValue).toArray();
    }

    private static List<LayerSelection> removeLayers(StructureGraph graph, Scores scores, Allocation.Options o) {
        if (scores.layers() == null) {
            throw new IllegalArgumentException("criterion " + scores.criterion() + " gives no layer scores; it cannot remove layers");
        }
        int n = graph.numLayers();
        List<Integer> candidates = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (o.prunable(i, n)) {
                candidates.add(i);
            }
        }
        double[] cs = candidates.stream().mapToDouble(i -> scores.layers()[i]).toArray();
        int k = Math.min((int) Math.round(o.ratio() * candidates.size()), n - 1);
        boolean[] drop = new boolean[n];
        for (int j : Allocation.lowest(cs, k)) {
            drop[candidates.get(j)] = true;
        }
        List<LayerSelection> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(drop[i] ? LayerSelection.dropped(i) : LayerSelection.whole(i, graph.config().layer(i)));
        }
        return out;
    }
}
