package dev.lopper.pruning.allocation;

import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.FlapCriterion;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * {@code --allocation al-mm}: FLAP's <b>AL-MM</b> (adaptive layers, manual modules), as {@code prune_flap} and
 * {@code cal_remove_neuron} in FLAP's {@code lib/prune.py} code it. Two separate model-wide thresholds, one over
 * all head units and one over all MLP channels of the prunable layers, on scores standardized per layer and
 * module (FLAP's own scores already are; others, e.g. Wanda-sp, are standardized here as in AL-AM):
 * <pre>
 *   heads removed    Rh = int(headRatio x all head units)            official: remove_heads
 *   channels removed Rc = int((ratio x P_all - P(removed heads)) / P_channel)
 *                      official: int((L*ratio*(3*d*d_ff + 4*d*d) - 4*d*128*remove_heads) / (3*d))
 * </pre>
 * the {@code Rh} lowest head units and {@code Rc} lowest channels anywhere in the model go (official:
 * {@code thres = sorted_desc[-R]}, keep {@code > thres}). {@code --head-ratio} is the manual split, default
 * {@code --ratio}. Unlike AL-AM the attention/MLP split is fixed; only its distribution over layers adapts.
 *
 * <p>Deviations: exactly {@code R} units go even with ties at the threshold (FLAP removes every tie); a layer that
 * would lose all its head units or channels keeps its best one (FLAP empties it), so slightly less than {@code R}
 * can go; {@code R = 0} removes nothing (FLAP's {@code sorted[-0]} is the maximum, which removes all).
 */
public final class AdaptiveManualAllocation implements Allocation.Strategy {
    static final String NAME = "al-mm";

    @Override
    public List<LayerSelection> select(StructureGraph graph, Scores scores, Allocation.Options o) {
        UniformManualAllocation.checkManual(o, NAME);
        ModelConfig c = graph.config();
        int n = graph.numLayers();
        StructureGraph.Kind unit = o.headUnit() != null ? o.headUnit() : scores.headUnit();
        boolean standardize = !scores.comparableAcrossLayers();
        double[][] headZ = new double[n][];
        double[][] channelZ = new double[n][];
        int[][] slotOrder = new int[n][];
        long[] unitParams = new long[n];
        long prunable = 0;
        long channelParams = 0;
        for (int i = 0; i < n; i++) {
            LayerShape s = c.layer(i);
            if (!o.prunable(i, n)) {
                continue;
            }
            prunable += Allocation.prunable(c, s, true, true, false);
            if (s.numHeads() > 0) {
                double[] hs = Allocation.headScores(scores, unit)[i];
                double[] us = hs;
                unitParams[i] = graph.kvGroups(i).parametersPerUnit();
                if (unit == StructureGraph.Kind.QUERY_HEAD) {
                    slotOrder[i] = AdaptiveAllocation.slotOrder(s, hs);
                    us = AdaptiveAllocation.slotScores(s, hs, slotOrder[i]);
                    unitParams[i] = graph.queryHeads(i).parametersPerUnit() * s.numKvHeads();
                }
                headZ[i] = standardize ? FlapCriterion.standardize(us) : us;
            }
            if (s.intermediateSize() > 0) {
                channelZ[i] = standardize ? FlapCriterion.standardize(scores.channels()[i]) : scores.channels()[i];
                channelParams = graph.mlpChannels(i).parametersPerUnit();
            }
        }
        double rh = o.headRatio() != null ? o.headRatio() : o.ratio();
        boolean[][] headGone = lowestModelWide(headZ, rh, -1);
        long headParams = 0;
        for (int i = 0; i < n; i++) {
            for (int u = 0; headGone[i] != null && u < headGone[i].length; u++) {
                headParams += headGone[i][u] ? unitParams[i] : 0;
            }
        }
        // the same double arithmetic as cal_remove_neuron: (L * ratio * P - heads) / (3 d), truncated
        long rc = channelParams == 0 ? 0 : Math.max(0, (long) ((o.ratio() * prunable - headParams) / channelParams));
        boolean[][] channelGone = lowestModelWide(channelZ, 0, rc);
        List<LayerSelection> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            LayerShape s = c.layer(i);
            if (headGone[i] == null && channelGone[i] == null) {
                out.add(LayerSelection.whole(i, s));
                continue;
            }
            keepBest(headGone[i], headZ[i]);
            keepBest(channelGone[i], channelZ[i]);
            out.add(Allocation.keptOf(i, s, unit, headGone[i], slotOrder[i], channelGone[i]));
        }
        return out;
    }

    /**
     * Marks the lowest units over all layers' rows of {@code z} (null rows: not prunable): {@code count} of them,
     * or {@code int(ratio x all units)} when {@code count < 0}.
     */
    private static boolean[][] lowestModelWide(double[][] z, double ratio, long count) {
        int total = 0;
        for (double[] row : z) {
            total += row == null ? 0 : row.length;
        }
        double[] flat = new double[total];
        int[] layerOf = new int[total];
        int[] indexOf = new int[total];
        int p = 0;
        for (int i = 0; i < z.length; i++) {
            for (int u = 0; z[i] != null && u < z[i].length; u++, p++) {
                flat[p] = z[i][u];
                layerOf[p] = i;
                indexOf[p] = u;
            }
        }
        int k = (int) Math.min(total, count < 0 ? (long) (ratio * total) : count);
        boolean[][] gone = new boolean[z.length][];
        for (int i = 0; i < z.length; i++) {
            gone[i] = z[i] == null ? null : new boolean[z[i].length];
        }
        for (int q : Allocation.lowest(flat, k)) {
            gone[layerOf[q]][indexOf[q]] = true;
        }
        return gone;
    }

    /** Where a module lost every unit, its best-scored one stays (Lopper's minimum of one per layer). */
    private static void keepBest(boolean[] gone, double[] z) {
        if (gone == null || gone.length == 0) {
            return;
        }
        int best = 0;
        for (int u = 0; u < gone.length; u++) {
            if (!gone[u]) {
                return;
            }
            best = z[u] > z[best] ? u : best;
        }
        gone[best] = false;
    }
}
