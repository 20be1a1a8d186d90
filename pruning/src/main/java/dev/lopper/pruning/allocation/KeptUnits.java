package dev.lopper.pruning.allocation;

import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The one map between the ORIGINAL model's unit indices (where scores are allocated and plans are written) and a
 * model already cut (a schedule's current model, a model cut while training): per layer, the original indices of
 * the KV groups, query heads and MLP channels it keeps, in order. Scores of the current model map onto the original
 * indices ({@link #toOriginal}: removed units score -infinity, so an allocation keeps them removed and counts them),
 * and an allocation on the original indices maps back to the cuts the current model needs ({@link #toCurrent}).
 * Layers are never removed here (a removed layer would renumber the rest).
 *
 * <pre>{@code
 * KeptUnits kept = KeptUnits.whole(original);
 * List<LayerSelection> target = Allocation.allocate(graph, kept.toOriginal(currentScores), options).resolve(original);
 * List<LayerSelection> cut = kept.toCurrent(target);        // surgery on the current model
 * kept = kept.keep(target);
 * }</pre>
 */
public final class KeptUnits {
    private final ModelConfig original;
    private final List<LayerSelection> kept;

    private KeptUnits(ModelConfig original, List<LayerSelection> kept) {
        this.original = original;
        this.kept = List.copyOf(kept);
    }

    /** Every unit of {@code original} kept. */
    public static KeptUnits whole(ModelConfig original) {
        List<LayerSelection> all = new ArrayList<>();
        for (int l = 0; l < original.numLayers(); l++) {
            all.add(LayerSelection.whole(l, original.layer(l)));
        }
        return new KeptUnits(original, all);
    }

    /** What {@code kept} (one selection per original layer, original indices) keeps. */
    public static KeptUnits of(ModelConfig original, List<LayerSelection> kept) {
        return new KeptUnits(original, kept);
    }

    /** What is kept now, one selection per original layer in original indices (for a plan). */
    public List<LayerSelection> kept() {
        return kept;
    }

    /** The original index of the current model's unit {@code unit} of {@code kind} in layer {@code layer}. */
    public int original(StructureGraph.Kind kind, int layer, int unit) {
        LayerSelection k = kept.get(layer);
        return switch (kind) {
            case KV_GROUP -> k.keptKvGroups()[unit];
            case QUERY_HEAD -> k.keptHeads()[unit];
            case MLP_CHANNEL -> k.keptChannels()[unit];
            case LAYER -> layer;
            case HIDDEN_CHANNEL -> throw new IllegalArgumentException("hidden channels are one model-wide stream, not a unit of layer " + layer);
        };
    }

    /** Scores of the current model on the original indices: units already removed score -infinity. */
    public Scores toOriginal(Scores s) {
        int n = original.numLayers();
        double[][] kv = s.kvGroups() == null ? null : new double[n][];
        double[][] qh = s.queryHeads() == null ? null : new double[n][];
        double[][] ch = s.channels() == null ? null : new double[n][];
        for (int l = 0; l < n; l++) {
            LayerSelection k = kept.get(l);
            LayerShape shape = original.layer(l);
            if (kv != null) {
                kv[l] = spread(s.kvGroups()[l], k.keptKvGroups(), shape.numKvHeads());
            }
            if (qh != null) {
                qh[l] = spread(s.queryHeads()[l], k.keptHeads(), shape.numHeads());
            }
            if (ch != null) {
                ch[l] = spread(s.channels()[l], k.keptChannels(), shape.intermediateSize());
            }
        }
        // layer scores (Adapt-Pruner's layer importance) index layers, which are never removed here; hidden-channel and
        // sublayer scores are not mapped (a schedule refuses --targets hidden and sublayers)
        return new Scores(s.criterion(), s.comparableAcrossLayers(), s.headUnit(), kv, qh, ch, s.layers(), s.afterSurgery());
    }

    private static double[] spread(double[] current, int[] kept, int count) {
        double[] out = new double[count];
        Arrays.fill(out, Double.NEGATIVE_INFINITY);
        for (int j = 0; j < kept.length; j++) {
            out[kept[j]] = current[j];
        }
        return out;
    }

    /**
     * The cuts, one selection per layer in the current model's indices, that take the current model to
     * {@code target} (one selection per original layer, original indices, a subset of what is kept now).
     */
    public List<LayerSelection> toCurrent(List<LayerSelection> target) {
        List<LayerSelection> out = new ArrayList<>();
        for (int l = 0; l < kept.size(); l++) {
            LayerSelection b = kept.get(l);
            LayerSelection a = target.get(l);
            out.add(new LayerSelection(l, false, positions(b.keptKvGroups(), a.keptKvGroups(), "KV group", l),
                    positions(b.keptHeads(), a.keptHeads(), "query head", l), positions(b.keptChannels(), a.keptChannels(), "channel", l)));
        }
        return out;
    }

    /** What is kept after {@code target} (original indices) is applied. */
    public KeptUnits keep(List<LayerSelection> target) {
        return new KeptUnits(original, target);
    }

    private static int[] positions(int[] now, int[] kept, String what, int layer) {
        int[] out = new int[kept.length];
        for (int i = 0; i < kept.length; i++) {
            int p = Arrays.binarySearch(now, kept[i]);
            if (p < 0) {
                // cannot happen with -infinity scores and a strategy that removes the lowest first
                throw new IllegalStateException("layer " + layer + ": " + what + " " + kept[i] + " was removed earlier but is kept now");
            }
            out[i] = p;
        }
        return out;
    }
}
