package dev.lopper.pruning.allocation;

import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.model.ModelStats;
import dev.lopper.model.config.LayerShape;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * One threshold for the whole model: every targeted unit of every prunable layer (KV groups or query-head
 * "slots", MLP channels, whole layers) is ranked by score, and the lowest go until the removed parameters are
 * closest to {@code ratio x prunable}; each unit weighs its parameter count (FLAP's cumulative-weight threshold).
 * Needs scores comparable across layers and kinds. A layer keeps at least one head unit and one channel unless
 * "layers" is a target.
 *
 * <p>With query heads as the unit, layer l's slot r is the r-th lowest-scored query head of every KV group
 * (scored by their mean); removing slots in order keeps every group the same size. The r-th order statistic of
 * each group grows with r, so the slot scores of a layer grow with r and the ranking removes them in order.
 */
public final class GlobalAllocation implements Allocation.Strategy {
    private record Unit(int layer, StructureGraph.Kind kind, int index, double score, long params) {
    }

    @Override
    public boolean needsComparableScores() {
        return true;
    }

    @Override
    public List<LayerSelection> select(StructureGraph graph, Scores scores, Allocation.Options o) {
        if (!scores.comparableAcrossLayers()) {
            throw new IllegalArgumentException("criterion " + scores.criterion()
                    + " gives scores that are not comparable across layers; use --allocation uniform");
        }
        if (o.headRatio() != null || o.channelRatio() != null) {
            throw new IllegalArgumentException("--head-ratio/--channel-ratio apply to --allocation uniform only; global allocation decides the split");
        }
        var c = graph.config();
        int n = graph.numLayers();
        StructureGraph.Kind unit = o.headUnit() != null ? o.headUnit() : scores.headUnit();
        boolean allowEmpty = o.layers();
        boolean count = o.llmPrunerCounting() && !o.layers(); // LLM-Pruner's global rule: every unit counts one
        int[][] headOrder = new int[n][]; // QUERY_HEAD: per layer, per group, heads by ascending score (flattened)
        List<Unit> units = new ArrayList<>();
        long prunable = 0;
        for (int i = 0; i < n; i++) {
            if (!o.prunable(i, n)) {
                continue;
            }
            LayerShape s = c.layer(i);
            prunable += Allocation.prunable(c, s, o.heads(), o.channels(), o.layers());
            if (o.heads() && s.numHeads() > 0) {
                double[] hs = Allocation.headScores(scores, unit)[i];
                if (unit == StructureGraph.Kind.KV_GROUP) {
                    long p = count ? 1 : graph.kvGroups(i).parametersPerUnit();
                    for (int g = 0; g < s.numKvHeads(); g++) {
                        units.add(new Unit(i, unit, g, hs[g], p));
                    }
                } else {
                    int gs = s.groupSize();
                    headOrder[i] = new int[s.numHeads()];
                    for (int g = 0; g < s.numKvHeads(); g++) {
                        double[] local = Arrays.copyOfRange(hs, g * gs, (g + 1) * gs);
                        Integer[] byScore = Arrays.stream(LayerSelection.range(gs)).boxed().toArray(Integer[]::new);
                        Arrays.sort(byScore, (a, b) -> local[a] != local[b] ? Double.compare(local[a], local[b]) : Integer.compare(b, a));
                        for (int r = 0; r < gs; r++) {
                            headOrder[i][g * gs + r] = g * gs + byScore[r];
                        }
                    }
                    long p = (count ? 1 : graph.queryHeads(i).parametersPerUnit()) * s.numKvHeads();
                    for (int r = 0; r < gs; r++) {
                        double sum = 0;
                        for (int g = 0; g < s.numKvHeads(); g++) {
                            sum += hs[headOrder[i][g * gs + r]];
                        }
                        units.add(new Unit(i, unit, r, sum / s.numKvHeads(), p));
                    }
                }
            }
            if (o.channels()) {
                double[] cs = scores.channels()[i];
                long p = count ? 1 : graph.mlpChannels(i).parametersPerUnit();
                for (int ch = 0; ch < s.intermediateSize(); ch++) {
                    units.add(new Unit(i, StructureGraph.Kind.MLP_CHANNEL, ch, cs[ch], p));
                }
            }
            if (o.layers()) {
                if (scores.layers() == null) {
                    throw new IllegalArgumentException("criterion " + scores.criterion() + " gives no layer scores; it cannot remove layers");
                }
                units.add(new Unit(i, StructureGraph.Kind.LAYER, 0, scores.layers()[i], ModelStats.layerParameters(c, s)));
            }
        }
        units.sort(Comparator.comparingDouble(Unit::score).thenComparingInt(Unit::layer)
                .thenComparing(Unit::kind).thenComparingInt(Unit::index));

        long total = units.stream().mapToLong(Unit::params).sum();
        // parameters: the cumulative-weight threshold; units (llm-pruner): n_pruned = U - int(U x (1 - ratio))
        double budget = count ? total - (long) (total * (1 - o.ratio())) : o.ratio() * prunable;
        long removedParams = 0;
        long[] removedInLayer = new long[n];
        boolean[] layerGone = new boolean[n];
        int[] headUnitsGone = new int[n];
        boolean[][] channelGone = new boolean[n][];
        boolean[][] groupGone = new boolean[n][];
        int[] channelsGone = new int[n];
        int layersGone = 0;
        for (int i = 0; i < n; i++) {
            channelGone[i] = new boolean[c.layer(i).intermediateSize()];
            groupGone[i] = new boolean[c.layer(i).numKvHeads()];
        }
        for (Unit u : units) {
            int l = u.layer();
            LayerShape s = c.layer(l);
            if (layerGone[l]) {
                continue;
            }
            long p = u.kind() == StructureGraph.Kind.LAYER ? u.params() - removedInLayer[l] : u.params();
            if (removedParams + p / 2.0 > budget) {
                break; // the threshold: removing this unit would overshoot more than it helps
            }
            switch (u.kind()) {
                case KV_GROUP -> {
                    if (!allowEmpty && headUnitsGone[l] + 1 >= s.numKvHeads()) {
                        continue;
                    }
                    groupGone[l][u.index()] = true;
                    headUnitsGone[l]++;
                }
                case QUERY_HEAD -> {
                    if ((!allowEmpty && headUnitsGone[l] + 1 >= s.groupSize()) || u.index() != headUnitsGone[l]) {
                        continue;
                    }
                    headUnitsGone[l]++;
                }
                case MLP_CHANNEL -> {
                    if (!allowEmpty && channelsGone[l] + 1 >= s.intermediateSize()) {
                        continue;
                    }
                    channelGone[l][u.index()] = true;
                    channelsGone[l]++;
                }
                case LAYER -> {
                    if (layersGone + 1 >= n) {
                        continue;
                    }
                    layerGone[l] = true;
                    layersGone++;
                }
            }
            removedParams += p;
            removedInLayer[l] += p;
        }

        List<LayerSelection> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            LayerShape s = c.layer(i);
            if (layerGone[i]) {
                out.add(LayerSelection.dropped(i));
                continue;
            }
            int[] groups;
            int[] heads;
            if (unit == StructureGraph.Kind.QUERY_HEAD && headOrder[i] != null) {
                int gs = s.groupSize();
                int k = headUnitsGone[i];
                groups = k == gs ? new int[0] : LayerSelection.range(s.numKvHeads());
                List<Integer> kept = new ArrayList<>();
                for (int g = 0; g < s.numKvHeads() && k < gs; g++) {
                    for (int r = k; r < gs; r++) {
                        kept.add(headOrder[i][g * gs + r]);
                    }
                }
                heads = kept.stream().mapToInt(Integer::intValue).sorted().toArray();
            } else {
                boolean[] gone = groupGone[i];
                groups = Arrays.stream(LayerSelection.range(s.numKvHeads())).filter(g -> !gone[g]).toArray();
                heads = Allocation.headsOfGroups(s, groups);
            }
            boolean[] cg = channelGone[i];
            int[] channels = Arrays.stream(LayerSelection.range(s.intermediateSize())).filter(ch -> !cg[ch]).toArray();
            out.add(new LayerSelection(i, false, groups, heads, channels));
        }
        return out;
    }
}
