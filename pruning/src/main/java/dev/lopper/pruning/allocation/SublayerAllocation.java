package dev.lopper.pruning.allocation;

import dev.lopper.model.ModelStats;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Target "sublayers": removes whole attention blocks (every head of a layer) and whole MLP blocks (every channel)
 * independently, lowest {@link Scores#sublayers()} first, until {@code ratio} of the prunable layers' parameters are
 * gone (the same threshold as global allocation: a unit goes while removing it overshoots by less than half of it).
 * A layer that loses both goes whole ({@code removedLayers}). Scores are compared across layers as they are: the
 * depth criteria's are (one statistic of the stream for every sublayer).
 */
final class SublayerAllocation {
    private SublayerAllocation() {
    }

    private record Unit(int layer, int kind, double score, long params) {
    }

    static List<LayerSelection> select(StructureGraph graph, Scores scores, Allocation.Options o) {
        if (scores.sublayers() == null) {
            throw new IllegalArgumentException("criterion " + scores.criterion() + " gives no sublayer scores; "
                    + "--targets sublayers takes --method block-influence, layer-loss or angular");
        }
        ModelConfig c = graph.config();
        int n = c.numLayers();
        List<Unit> units = new ArrayList<>();
        long prunable = 0;
        for (int i = 0; i < n; i++) {
            if (!o.prunable(i, n)) {
                continue;
            }
            LayerShape s = c.layer(i);
            long whole = ModelStats.layerParameters(c, s);
            prunable += whole;
            if (s.numHeads() > 0) {
                units.add(new Unit(i, 0, scores.sublayers()[i][0], whole - ModelStats.layerParameters(c, withoutAttention(s))));
            }
            if (s.intermediateSize() > 0) {
                units.add(new Unit(i, 1, scores.sublayers()[i][1], whole - ModelStats.layerParameters(c, withoutMlp(s))));
            }
        }
        units.sort(Comparator.comparingDouble(Unit::score).thenComparingInt(Unit::layer).thenComparingInt(Unit::kind));
        double budget = o.ratio() * prunable;
        long removed = 0;
        boolean[][] gone = new boolean[n][2];
        for (Unit u : units) {
            if (removed + u.params() / 2.0 > budget) {
                break;
            }
            gone[u.layer()][u.kind()] = true;
            removed += u.params();
        }
        List<LayerSelection> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            LayerShape s = c.layer(i);
            boolean attn = gone[i][0] || s.numHeads() == 0;
            boolean mlp = gone[i][1] || s.intermediateSize() == 0;
            if (attn && mlp && (gone[i][0] || gone[i][1])) {
                out.add(LayerSelection.dropped(i));
            } else {
                out.add(new LayerSelection(i, false, gone[i][0] ? new int[0] : LayerSelection.range(s.numKvHeads()),
                        gone[i][0] ? new int[0] : LayerSelection.range(s.numHeads()),
                        gone[i][1] ? new int[0] : LayerSelection.range(s.intermediateSize())));
            }
        }
        return out;
    }

    static LayerShape withoutAttention(LayerShape s) {
        return new LayerShape(0, 0, s.intermediateSize(), s.oProjBias(), s.downProjBias());
    }

    static LayerShape withoutMlp(LayerShape s) {
        return new LayerShape(s.numHeads(), s.numKvHeads(), 0, s.oProjBias(), s.downProjBias());
    }
}
