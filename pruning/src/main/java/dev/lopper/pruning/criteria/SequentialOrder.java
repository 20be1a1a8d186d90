package dev.lopper.pruning.criteria;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.allocation.UniformAllocation;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;

/**
 * The official order of the criteria whose code prunes each layer right after scoring it and feeds the
 * <em>pruned</em> layer's output to the next (Wanda-sp's {@code prune_wanda_sp}, GBLM's {@code prune_gblm}): in the
 * streaming engine a collector's {@code forwardWeights} returns the layer with its removed units' output columns
 * zeroed, chosen by uniform allocation from that layer's scores alone. Shared by {@link WandaSpCriterion} and
 * {@link GblmCriterion}.
 */
final class SequentialOrder {
    /** The orders: official sequential, dense one-pass, or sequential exactly when the allocation is uniform. */
    enum Order { SEQUENTIAL, DENSE, AUTO }

    private SequentialOrder() {
    }

    /** From the CLI spelling sequential|dense|auto (null: AUTO); {@code option} names the flag in errors. */
    static Order parse(String order, String option) {
        if (order == null) {
            return Order.AUTO;
        }
        return switch (order.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "sequential" -> Order.SEQUENTIAL;
            case "dense" -> Order.DENSE;
            case "auto" -> Order.AUTO;
            default -> throw new IllegalArgumentException(option + " " + order + ": expected sequential or dense");
        };
    }

    /** {@code uniform} when it is a uniform allocation of heads/channels; otherwise one line naming {@code option}. */
    static Allocation.Options require(Allocation.Options uniform, String method, String option) {
        if (!"uniform".equals(uniform.strategy()) || uniform.layers()) {
            throw new IllegalArgumentException(method + "'s sequential order prunes each layer as it goes, which needs --allocation uniform "
                    + "and targets heads/channels; use " + option + " dense for " + uniform.strategy());
        }
        return uniform;
    }

    /** The allocation to prune with while scoring under {@code order}, or null for the dense order. */
    static Allocation.Options resolve(Order order, Allocation.Options a, String method, String option) {
        return switch (order) {
            case DENSE -> null;
            case SEQUENTIAL -> a == null ? null : require(a, method, option);
            case AUTO -> a != null && "uniform".equals(a.strategy()) && !a.layers() ? a : null;
        };
    }

    /** Whether {@code order} prunes while scoring with {@code a} (the sequential order applies). */
    static boolean applies(Order order, Allocation.Options a) {
        return switch (order) {
            case DENSE -> false;
            case SEQUENTIAL -> true;
            case AUTO -> a != null && "uniform".equals(a.strategy()) && !a.layers();
        };
    }

    /** What uniform allocation {@code seq} keeps of layer {@code i} given only that layer's scores. */
    static LayerSelection selectLayer(String criterion, ModelConfig c, int i, double[] kv, double[] heads, double[] channels,
                                      Allocation.Options seq) {
        int n = c.numLayers();
        double[][] k = new double[n][], h = new double[n][], ch = new double[n][];
        for (int l = 0; l < n; l++) {
            LayerShape s = c.layer(l);
            k[l] = l == i ? kv : new double[s.numKvHeads()];
            h[l] = l == i ? heads : new double[s.numHeads()];
            ch[l] = l == i ? channels : new double[s.intermediateSize()];
        }
        Scores one = new Scores(criterion, false, StructureGraph.Kind.KV_GROUP, k, h, ch, null);
        return new UniformAllocation().select(StructureGraph.of(c), one, seq).get(i);
    }

    /**
     * The layer {@code w} as {@code seq} prunes it from its scores, for the next layer's input: null when nothing
     * goes (the dense output), else the layer with the removed units' output columns zeroed ({@link #masked}).
     */
    static LayerWeights pruned(String criterion, ModelConfig c, LayerWeights w, double[] kv, double[] heads, double[] channels,
                               Allocation.Options seq, NDManager manager) {
        LayerSelection sel = selectLayer(criterion, c, w.index(), kv, heads, channels, seq);
        return sel.unchanged(w.shape()) ? null : masked(w, sel, c.headDim(), manager);
    }

    /**
     * The layer with removed heads' o_proj columns and removed channels' down_proj columns zeroed: its output
     * equals the pruned layer's (a removed head or channel only reaches the output through those columns).
     */
    static LayerWeights masked(LayerWeights w, LayerSelection sel, int headDim, NDManager manager) {
        LayerShape s = w.shape();
        float[] oMask = new float[s.numHeads() * headDim];
        for (int h : sel.keptHeads()) {
            java.util.Arrays.fill(oMask, h * headDim, (h + 1) * headDim, 1f);
        }
        float[] dMask = new float[s.intermediateSize()];
        for (int j : sel.keptChannels()) {
            dMask[j] = 1f;
        }
        NDArray o = w.o().mul(manager.create(oMask));
        o.attach(manager);
        NDArray down = w.down().mul(manager.create(dMask));
        down.attach(manager);
        return w.withOutputProjections(o, down);
    }
}
