package dev.lopper.pruning.allocation;

import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.ArrayList;
import java.util.List;

/**
 * {@code --allocation ul-mm}: FLAP's <b>UL-MM</b> (uniform layers, manual modules), as {@code prune_flap} and
 * {@code cal_remove_neuron} in FLAP's {@code lib/prune.py} code it. Every prunable layer loses the same number of
 * head units, set by hand, and then as many MLP channels as make the layer lose {@code ratio} of its prunable
 * parameters:
 * <pre>
 *   heads removed    kh = int(headRatio x units)                       official: remove_heads // num_layers
 *   channels removed kc = int((ratio x P_layer - kh x P_head) / P_channel)
 *                      official: int((ratio*(3*d*d_ff + 4*d*d) - 4*d*128*(remove_heads // L)) / (3*d))
 * </pre>
 * the lowest scored of each. {@code --head-ratio} is the manual split (official {@code --remove_heads N} is
 * {@code --head-ratio N / (layers x heads)}); without it the heads' share is {@code --ratio}. Lopper counts
 * {@code P_*} from the structure graph (GQA groups, biases) where FLAP hard-codes MHA with 128-wide heads; for
 * LLaMA-7B they agree. A layer keeps at least one head unit and one channel ({@code kc} is clamped to
 * {@code [0, d_ff - 1]}; FLAP would index with a negative count).
 */
public final class UniformManualAllocation implements Allocation.Strategy {
    static final String NAME = "ul-mm";

    @Override
    public List<LayerSelection> select(StructureGraph graph, Scores scores, Allocation.Options o) {
        checkManual(o, NAME);
        ModelConfig c = graph.config();
        int n = graph.numLayers();
        StructureGraph.Kind unit = o.headUnit() != null ? o.headUnit() : scores.headUnit();
        double rh = o.headRatio() != null ? o.headRatio() : o.ratio();
        List<LayerSelection> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            LayerShape s = c.layer(i);
            if (!o.prunable(i, n)) {
                out.add(LayerSelection.whole(i, s));
                continue;
            }
            int[] groups = LayerSelection.range(s.numKvHeads());
            int[] heads = LayerSelection.range(s.numHeads());
            long headParams = 0;
            if (s.numHeads() > 0) {
                double[] hs = Allocation.headScores(scores, unit)[i];
                if (unit == StructureGraph.Kind.KV_GROUP) {
                    int k = Math.min((int) (rh * s.numKvHeads()), s.numKvHeads() - 1);
                    groups = Allocation.complement(s.numKvHeads(), Allocation.lowest(hs, k));
                    heads = Allocation.headsOfGroups(s, groups);
                    headParams = k * graph.kvGroups(i).parametersPerUnit();
                } else {
                    int k = Math.min((int) (rh * s.groupSize()), s.groupSize() - 1);
                    heads = UniformAllocation.keepPerGroup(s, hs, k);
                    headParams = (long) k * s.numKvHeads() * graph.queryHeads(i).parametersPerUnit();
                }
            }
            int[] channels = LayerSelection.range(s.intermediateSize());
            if (s.intermediateSize() > 0) {
                // the same double arithmetic as cal_remove_neuron: (ratio * P - heads) / (3 d), truncated
                double budget = o.ratio() * Allocation.prunable(c, s, true, true, false);
                int k = (int) ((budget - headParams) / graph.mlpChannels(i).parametersPerUnit());
                k = Math.max(0, Math.min(k, s.intermediateSize() - 1));
                channels = Allocation.complement(s.intermediateSize(), Allocation.lowest(scores.channels()[i], k));
            }
            out.add(new LayerSelection(i, false, groups, heads, channels));
        }
        return out;
    }

    /** The manual-module structures split one budget between heads and channels: both must be targets. */
    static void checkManual(Allocation.Options o, String name) {
        if (!o.heads() || !o.channels() || o.layers()) {
            throw new IllegalArgumentException("--allocation " + name + " splits the budget between heads and channels: "
                    + "use --targets heads,channels");
        }
        if (o.channelRatio() != null) {
            throw new IllegalArgumentException("--allocation " + name + " derives the channels from --ratio and --head-ratio; "
                    + "--channel-ratio does not apply");
        }
    }
}
