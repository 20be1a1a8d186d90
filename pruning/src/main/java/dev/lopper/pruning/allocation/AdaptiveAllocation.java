package dev.lopper.pruning.allocation;

import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * {@code --allocation adaptive}: each layer's share is decided by the scores, not fixed.
 *
 * <p><b>FLAP's AL-AM</b>: all head units and MLP channels of the prunable layers
 * are ranked together by score, descending; each unit weighs its parameter count (FLAP hard-codes 512/3 for a
 * 128-wide MHA head against a channel; Lopper counts the unit's real parameters, so GQA groups weigh what they
 * hold). The threshold is the score where the cumulative weight is closest to {@code (1 - ratio)} of the total,
 * and units scoring strictly above it stay. Scores that are not comparable across layers
 * ({@link Scores#comparableAcrossLayers()} false, e.g. Wanda-sp) are first standardized per layer and module,
 * as FLAP does with its own metric (FLAP's scores arrive already standardized at channel level). With
 * {@code headRatio}/{@code channelRatio} given, heads and channels get separate thresholds.
 *
 * <p>CFSP's coarse block budgets are an allocation of their own, {@link CfspBlockAllocation}.
 *
 * <p>Deviation from FLAP: a layer keeps at least one head unit and one channel (FLAP can empty a module; Lopper's
 * plans only allow that with target "layers").
 */
public final class AdaptiveAllocation implements Allocation.Strategy {

    @Override
    public List<LayerSelection> select(StructureGraph graph, Scores scores, Allocation.Options o) {
        if (o.layers()) {
            throw new IllegalArgumentException("--allocation adaptive prunes heads and channels, not whole layers; "
                    + "use --allocation uniform or global for target 'layers'");
        }
        StructureGraph.Kind unit = o.headUnit() != null ? o.headUnit() : scores.headUnit();
        return flap(graph, scores, o, unit);
    }

    // ------------------------------------------------------------------ FLAP AL-AM

    private record Unit(int layer, boolean head, int index, double score, double weight) {
    }

    private List<LayerSelection> flap(StructureGraph graph, Scores scores, Allocation.Options o, StructureGraph.Kind unit) {
        ModelConfig c = graph.config();
        int n = graph.numLayers();
        boolean standardize = !scores.comparableAcrossLayers();
        int[][] slotOrder = new int[n][]; // QUERY_HEAD: per layer, the heads of slot r are slotOrder[g * gs + r]
        List<Unit> heads = new ArrayList<>();
        List<Unit> channels = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (!o.prunable(i, n)) {
                continue;
            }
            LayerShape s = c.layer(i);
            if (o.heads() && s.numHeads() > 0) {
                double[] hs = Allocation.headScores(scores, unit)[i];
                double[] unitScores;
                double weight;
                if (unit == StructureGraph.Kind.KV_GROUP) {
                    unitScores = hs;
                    weight = graph.kvGroups(i).parametersPerUnit();
                } else {
                    slotOrder[i] = slotOrder(s, hs);
                    unitScores = slotScores(s, hs, slotOrder[i]);
                    weight = graph.queryHeads(i).parametersPerUnit() * (double) s.numKvHeads();
                }
                double[] z = standardize ? Scores.standardize(unitScores) : unitScores;
                for (int u = 0; u < z.length; u++) {
                    heads.add(new Unit(i, true, u, z[u], weight));
                }
            }
            if (o.channels() && s.intermediateSize() > 0) {
                double[] cs = scores.channels()[i];
                double[] z = standardize ? Scores.standardize(cs) : cs;
                double weight = graph.mlpChannels(i).parametersPerUnit();
                for (int u = 0; u < z.length; u++) {
                    channels.add(new Unit(i, false, u, z[u], weight));
                }
            }
        }
        boolean[][] headGone = new boolean[n][];
        boolean[][] channelGone = new boolean[n][];
        for (int i = 0; i < n; i++) {
            headGone[i] = new boolean[unit == StructureGraph.Kind.KV_GROUP ? c.layer(i).numKvHeads() : c.layer(i).groupSize()];
            channelGone[i] = new boolean[c.layer(i).intermediateSize()];
        }
        if (o.headRatio() != null || o.channelRatio() != null) {
            threshold(heads, o.headRatio() != null ? o.headRatio() : o.ratio(), headGone, channelGone);
            threshold(channels, o.channelRatio() != null ? o.channelRatio() : o.ratio(), headGone, channelGone);
        } else {
            List<Unit> all = new ArrayList<>(heads);
            all.addAll(channels);
            threshold(all, o.ratio(), headGone, channelGone);
        }
        keepBest(heads, headGone);
        keepBest(channels, channelGone);
        List<LayerSelection> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            LayerShape s = c.layer(i);
            out.add(Allocation.keptOf(i, s, unit, headGone[i], slotOrder[i], channelGone[i]));
        }
        return out;
    }

    /**
     * FLAP's threshold: sort descending, find the position where the cumulative weight is closest to
     * (1 - ratio) x total, and mark every unit scoring at or below that position's score as removed.
     */
    private static void threshold(List<Unit> units, double ratio, boolean[][] headGone, boolean[][] channelGone) {
        if (units.isEmpty() || ratio <= 0) {
            return;
        }
        List<Unit> sorted = new ArrayList<>(units);
        sorted.sort(Comparator.comparingDouble(Unit::score).reversed());
        double total = 0;
        for (Unit u : sorted) {
            total += u.weight();
        }
        double target = total * (1 - ratio);
        double cum = 0;
        int best = 0;
        double bestGap = Double.POSITIVE_INFINITY;
        for (int k = 0; k < sorted.size(); k++) {
            cum += sorted.get(k).weight();
            double gap = Math.abs(cum - target);
            if (gap < bestGap) { // first minimum, as torch.argmin
                bestGap = gap;
                best = k;
            }
        }
        double thr = sorted.get(best).score();
        for (Unit u : units) {
            if (!(u.score() > thr)) {
                (u.head() ? headGone : channelGone)[u.layer()][u.index()] = true;
            }
        }
    }

    /** Where a module lost every unit, the best-scored one stays (a layer keeps one head unit and one channel). */
    private static void keepBest(List<Unit> units, boolean[][] gone) {
        Unit[] best = new Unit[gone.length];
        for (Unit u : units) {
            if (best[u.layer()] == null || u.score() > best[u.layer()].score()) {
                best[u.layer()] = u;
            }
        }
        for (int i = 0; i < gone.length; i++) {
            boolean all = gone[i].length > 0;
            for (boolean g : gone[i]) {
                all &= g;
            }
            if (all && best[i] != null) {
                gone[i][best[i].index()] = false;
            }
        }
    }

    /** Per KV group, the group's query heads by ascending score: slot r of group g is order[g * gs + r]. */
    static int[] slotOrder(LayerShape s, double[] hs) {
        int gs = s.groupSize();
        int[] order = new int[s.numHeads()];
        for (int g = 0; g < s.numKvHeads(); g++) {
            double[] local = Arrays.copyOfRange(hs, g * gs, (g + 1) * gs);
            Integer[] byScore = Arrays.stream(LayerSelection.range(gs)).boxed().toArray(Integer[]::new);
            Arrays.sort(byScore, (a, b) -> local[a] != local[b] ? Double.compare(local[a], local[b]) : Integer.compare(b, a));
            for (int r = 0; r < gs; r++) {
                order[g * gs + r] = g * gs + byScore[r];
            }
        }
        return order;
    }

    /** Slot r's score: the mean over groups of each group's r-th lowest query head (grows with r). */
    static double[] slotScores(LayerShape s, double[] hs, int[] order) {
        int gs = s.groupSize();
        double[] out = new double[gs];
        for (int r = 0; r < gs; r++) {
            for (int g = 0; g < s.numKvHeads(); g++) {
                out[r] += hs[order[g * gs + r]] / s.numKvHeads();
            }
        }
        return out;
    }
}
