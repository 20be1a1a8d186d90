package dev.lopper.pruning.graph;

import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * What stays of one original decoder layer after a plan: complete, sorted index lists (original numbering). A
 * {@link dev.lopper.pruning.plan.PruningPlan} resolved against a config gives one per original layer; surgery and tests read these.
 *
 * @param layer original layer index
 * @param removed whether the whole layer goes (then the other fields are empty)
 * @param keptKvGroups KV groups kept, ascending
 * @param keptHeads query heads kept, ascending; each belongs to a kept group, every kept group keeps the same count
 * @param keptChannels MLP channels kept, ascending
 */
public record LayerSelection(int layer, boolean removed, int[] keptKvGroups, int[] keptHeads, int[] keptChannels) {

    /** A layer kept whole. */
    public static LayerSelection whole(int layer, LayerShape s) {
        return new LayerSelection(layer, false, range(s.numKvHeads()), range(s.numHeads()), range(s.intermediateSize()));
    }

    /** A removed layer. */
    public static LayerSelection dropped(int layer) {
        return new LayerSelection(layer, true, new int[0], new int[0], new int[0]);
    }

    /** The layer's shape after surgery ({@code original} gives the bias flags and the group size). */
    public LayerShape shape(LayerShape original) {
        return new LayerShape(keptHeads.length, keptKvGroups.length, keptChannels.length, original.oProjBias(),
                original.downProjBias());
    }

    /** True when nothing of the layer is cut. */
    public boolean unchanged(LayerShape original) {
        return !removed && keptKvGroups.length == original.numKvHeads() && keptHeads.length == original.numHeads()
                && keptChannels.length == original.intermediateSize();
    }

    /** The config after applying selections (removed layers dropped, others reshaped). */
    public static ModelConfig prunedConfig(ModelConfig config, List<LayerSelection> sel) {
        List<LayerShape> shapes = new ArrayList<>();
        for (LayerSelection s : sel) {
            if (!s.removed()) {
                shapes.add(s.shape(config.layer(s.layer())));
            }
        }
        return config.withLayers(shapes);
    }

    /** 0..n-1. */
    public static int[] range(int n) {
        int[] r = new int[n];
        Arrays.setAll(r, i -> i);
        return r;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LayerSelection s && s.layer == layer && s.removed == removed
                && Arrays.equals(s.keptKvGroups, keptKvGroups) && Arrays.equals(s.keptHeads, keptHeads)
                && Arrays.equals(s.keptChannels, keptChannels);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(keptChannels) * 31 + Arrays.hashCode(keptHeads) + layer;
    }

    @Override
    public String toString() {
        return "layer " + layer + (removed ? " removed" : ": kv groups " + keptKvGroups.length + ", heads "
                + keptHeads.length + ", channels " + keptChannels.length);
    }
}
