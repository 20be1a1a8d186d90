package dev.lopper.training.method;

import ai.djl.ndarray.NDArray;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Function;

/**
 * What both methods share: per-unit sums of an element-wise quantity over a structure's member tensors (read from
 * {@link StructureGraph}, the one place that knows the coupling), and the bookkeeping between the ORIGINAL model's
 * unit indices (where scores, plans and allocation live) and the current, already cut model's.
 *
 * <pre>{@code
 * Units units = Units.whole(original);
 * double[] s = Units.perUnit(graph.kvGroups(l), name -> w.get(name).mul(g.get(name)).abs());
 * List<LayerSelection> cut = units.toCurrent(allocated);   // then units.keep(allocated)
 * }</pre>
 */
public final class Units {
    private final ModelConfig original;
    private final int[][] groups;
    private final int[][] channels;

    private Units(ModelConfig original, int[][] groups, int[][] channels) {
        this.original = original;
        this.groups = groups;
        this.channels = channels;
    }

    /** Every unit of {@code original} kept. */
    public static Units whole(ModelConfig original) {
        int n = original.numLayers();
        int[][] g = new int[n][];
        int[][] c = new int[n][];
        for (int i = 0; i < n; i++) {
            g[i] = LayerSelection.range(original.layer(i).numKvHeads());
            c[i] = LayerSelection.range(original.layer(i).intermediateSize());
        }
        return new Units(original, g, c);
    }

    /** Restored from {@link #groups()} / {@link #channels()}. */
    public static Units of(ModelConfig original, int[][] groups, int[][] channels) {
        return new Units(original, groups, channels);
    }

    /** Original indices of the KV groups each layer keeps. */
    public int[][] groups() {
        return groups;
    }

    public int[][] channels() {
        return channels;
    }

    /** Original index of current unit {@code u} of {@code kind} in layer {@code l}. */
    public int original(StructureGraph.Kind kind, int l, int u) {
        return kind == StructureGraph.Kind.KV_GROUP ? groups[l][u] : channels[l][u];
    }

    /**
     * Sums {@code elementwise(tensor)} (same shape as the tensor) over each unit of {@code set}: per member, the
     * unit's {@code width} rows (axis 0) or columns (axis 1), all of the other axis.
     */
    public static double[] perUnit(StructureGraph.StructureSet set, Function<String, NDArray> elementwise) {
        double[] out = new double[set.count()];
        for (StructureGraph.Member m : set.members()) {
            NDArray e = elementwise.apply(m.tensor());
            NDArray line = e.getShape().dimension() == 1 ? e : e.sum(new int[] {1 - m.axis()});
            double[] v = line.toType(ai.djl.ndarray.types.DataType.FLOAT64, false).toDoubleArray();
            for (int u = 0; u < set.count(); u++) {
                for (long i = m.start(u); i < m.end(u); i++) {
                    out[u] += v[(int) i];
                }
            }
        }
        return out;
    }

    /**
     * The cuts (current model's indices, one per layer) that take the current model to {@code target} (one
     * selection per original layer, original indices, a subset of what is kept now).
     */
    public List<LayerSelection> toCurrent(List<LayerSelection> target) {
        List<LayerSelection> out = new ArrayList<>();
        for (LayerSelection t : target) {
            int l = t.layer();
            int[] g = positions(groups[l], t.keptKvGroups(), "KV group", l);
            int[] c = positions(channels[l], t.keptChannels(), "channel", l);
            LayerShape now = new LayerShape(groups[l].length * original.layer(l).groupSize(), groups[l].length, channels[l].length);
            out.add(new LayerSelection(l, false, g, Allocation.headsOfGroups(now, g), c));
        }
        return out;
    }

    /** Records {@code target} (original indices) as what is kept now. */
    public void keep(List<LayerSelection> target) {
        for (LayerSelection t : target) {
            groups[t.layer()] = t.keptKvGroups().clone();
            channels[t.layer()] = t.keptChannels().clone();
        }
    }

    /** The current model's config. */
    public ModelConfig currentConfig() {
        List<LayerSelection> sel = new ArrayList<>();
        for (int l = 0; l < original.numLayers(); l++) {
            sel.add(new LayerSelection(l, false, groups[l], Allocation.headsOfGroups(original.layer(l), groups[l]), channels[l]));
        }
        return LayerSelection.prunedConfig(original, sel);
    }

    /** What is kept now as selections of the original model (for the plan). */
    public List<LayerSelection> selections() {
        List<LayerSelection> sel = new ArrayList<>();
        for (int l = 0; l < original.numLayers(); l++) {
            sel.add(new LayerSelection(l, false, groups[l].clone(), Allocation.headsOfGroups(original.layer(l), groups[l]),
                    channels[l].clone()));
        }
        return sel;
    }

    private static int[] positions(int[] now, int[] kept, String what, int layer) {
        int[] out = new int[kept.length];
        for (int i = 0; i < kept.length; i++) {
            int p = Arrays.binarySearch(now, kept[i]);
            if (p < 0) {
                throw new IllegalStateException("layer " + layer + ": " + what + " " + kept[i] + " was already removed");
            }
            out[i] = p;
        }
        return out;
    }
}
