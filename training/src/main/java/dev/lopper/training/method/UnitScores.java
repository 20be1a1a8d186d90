package dev.lopper.training.method;

import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;

/**
 * Per layer one score for each KV group and each MLP channel, the two kinds of unit the training-aware methods
 * rank: LoRAPrune's importance of a step and its moving average, EfficientLLM's saliency since the last removal.
 *
 * <pre>{@code
 * UnitScores s = UnitScores.zeros(config);
 * s.groups()[3][1] += 0.5;                                   // layer 3, KV group 1
 * Scores ranked = s.scores("lora-prune", false);
 * }</pre>
 *
 * @param groups [layer][KV group]
 * @param channels [layer][channel]
 */
public record UnitScores(double[][] groups, double[][] channels) {
    /** One layer's new row of one kind from its current {@code row}. */
    private interface RowMap {
        double[] apply(double[] row, int layer, boolean group);
    }

    /** Zeros for every unit of {@code config}'s layers. */
    public static UnitScores zeros(ModelConfig config) {
        int n = config.numLayers();
        UnitScores s = new UnitScores(new double[n][], new double[n][]);
        for (int l = 0; l < n; l++) {
            s.groups[l] = new double[config.layer(l).numKvHeads()];
            s.channels[l] = new double[config.layer(l).intermediateSize()];
        }
        return s;
    }

    private UnitScores map(RowMap f) {
        double[][] g = new double[groups.length][];
        double[][] c = new double[channels.length][];
        for (int l = 0; l < g.length; l++) {
            g[l] = f.apply(groups[l], l, true);
            c[l] = f.apply(channels[l], l, false);
        }
        return new UnitScores(g, c);
    }

    public UnitScores copy() {
        return map((row, l, group) -> row.clone());
    }

    /** The scores of the units {@code kept} keeps (one selection per layer), in its order: those of the cut model. */
    public UnitScores pick(List<LayerSelection> kept) {
        return map((row, l, group) -> Arrays.stream(group ? kept.get(l).keptKvGroups() : kept.get(l).keptChannels())
                .mapToDouble(i -> row[i]).toArray());
    }

    /** The same units, those {@code kept} does not keep (one selection per layer) at -infinity. */
    public UnitScores masked(List<LayerSelection> kept) {
        return map((row, l, group) -> {
            double[] out = new double[row.length];
            Arrays.fill(out, Double.NEGATIVE_INFINITY);
            for (int k : group ? kept.get(l).keptKvGroups() : kept.get(l).keptChannels()) {
                out[k] = row[k];
            }
            return out;
        });
    }

    /** {@code beta x this + (1 - beta) x now}, unit by unit (a moving average). */
    public UnitScores mix(double beta, UnitScores now) {
        return map((row, l, group) -> {
            double[] x = (group ? now.groups : now.channels)[l];
            double[] out = new double[row.length];
            for (int j = 0; j < row.length; j++) {
                out[j] = beta * row[j] + (1 - beta) * x[j];
            }
            return out;
        });
    }

    public boolean hasNaN() {
        return Stream.concat(Arrays.stream(groups), Arrays.stream(channels)).flatMapToDouble(Arrays::stream).anyMatch(Double::isNaN);
    }

    /** As a criterion's scores (KV groups the head unit), the arrays shared. */
    public Scores scores(String criterion, boolean comparableAcrossLayers) {
        return new Scores(criterion, comparableAcrossLayers, StructureGraph.Kind.KV_GROUP, groups, null, channels, null);
    }
}
