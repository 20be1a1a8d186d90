package dev.lopper.training.method;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.io.TensorSource;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.plan.PruningPlan;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The end of a Compresso run: the deterministic masks ({@link #official}, or {@link #atRatio}) as a
 * {@link PruningPlan} (units whose mask is 0 are removed) and the kept units' soft mask values folded into the
 * weights, as the official {@code merge_weights.py} ({@code update_params}) does: a channel's value scales its
 * gate_proj and up_proj rows (the forward multiplies both outputs), a KV group's value its v_proj rows (and v bias).
 * Surgery then removes the zeroed units, which changes nothing in the output, because a unit whose mask is 0
 * contributes nothing.
 *
 * <p>Deviation: a layer whose mask is 0 for every KV group (or every channel) keeps the one with the highest
 * log_alpha (Lopper's plans empty a module only when layers are a target), at its soft value.
 *
 * <pre>{@code
 * double[][][] z = HardMasks.official(masks, config.numLayers());
 * PruningPlan plan = HardMasks.plan(config, z[0], z[1]);
 * TensorMap folded = HardMasks.fold(config, merged, z[0], z[1], manager);
 * }</pre>
 */
public final class HardMasks {
    private HardMasks() {
    }

    /**
     * The official ending: each layer's deterministic masks ({@link HardConcrete#deterministic}, CoFi's
     * {@code deterministic_z}); where a layer's mask is all 0, the unit with the largest log_alpha keeps its soft value.
     *
     * @return {heads, channels}: per layer the mask, or null where the layer has none
     */
    public static double[][][] official(L0Masks masks, int layers) {
        double[][][] z = {new double[layers][], new double[layers][]};
        for (L0Masks.Units u : masks.units()) {
            double[] d;
            try (NDArray wide = u.logAlpha().toType(DataType.FLOAT64, false)) { // exact widening
                d = HardConcrete.deterministic(wide.toDoubleArray());
            }
            if (Arrays.stream(d).noneMatch(v -> v > 0)) {
                float[] a = u.logAlpha().toFloatArray();
                int best = IntStream.range(0, a.length).reduce((x, y) -> a[y] > a[x] ? y : x).orElseThrow(); // first on ties
                d[best] = soft(a)[best];
            }
            z[u.head() ? 0 : 1][u.layer()] = d;
        }
        return z;
    }

    /**
     * Masks that remove {@code ratio} of the prunable parameters (Lopper's default ending): every unit (KV groups and
     * MLP channels of all layers) ranked by its learned log_alpha, as CoFi's {@code deterministic_z} ranks within a
     * layer, and removed lowest first until the removed parameters reach {@code ratio x prunable} (never a layer's
     * last unit of a kind); kept units keep their soft value {@code sigmoid(log_alpha / T x 0.8)}, removed ones 0.
     * Ties: lower log_alpha, then channels before groups, then lower layer and index.
     *
     * @return {heads, channels}: per layer the mask, or null where the layer has none
     */
    public static double[][][] atRatio(L0Masks masks, int layers, double ratio) {
        record Unit(double logAlpha, boolean head, int layer, int index, long params) {
        }
        double[][] heads = new double[layers][];
        double[][] channels = new double[layers][];
        List<Unit> all = new ArrayList<>();
        int[] headsLeft = new int[layers];
        int[] channelsLeft = new int[layers];
        for (L0Masks.Units u : masks.units()) {
            float[] a = u.logAlpha().toFloatArray();
            (u.head() ? heads : channels)[u.layer()] = soft(a);
            (u.head() ? headsLeft : channelsLeft)[u.layer()] = a.length;
            for (int j = 0; j < a.length; j++) {
                all.add(new Unit(a[j], u.head(), u.layer(), j, u.perUnit()));
            }
        }
        all.sort(java.util.Comparator.comparingDouble(Unit::logAlpha).thenComparing(Unit::head).thenComparingInt(Unit::layer)
                .thenComparingInt(Unit::index));
        double target = ratio * masks.prunable();
        long removed = 0;
        for (Unit u : all) {
            if (removed >= target) {
                break;
            }
            int[] left = u.head() ? headsLeft : channelsLeft;
            if (left[u.layer()] <= 1) {
                continue; // a layer keeps one unit of each kind, as the official ending
            }
            left[u.layer()]--;
            (u.head() ? heads : channels)[u.layer()][u.index()] = 0;
            removed += u.params();
        }
        return new double[][][] {heads, channels};
    }

    private static double[] soft(float[] logAlpha) {
        double[] z = new double[logAlpha.length];
        for (int j = 0; j < z.length; j++) {
            z[j] = HardConcrete.sigmoid(logAlpha[j] / HardConcrete.TEMPERATURE * HardConcrete.MAGICAL_NUMBER);
        }
        return z;
    }

    /** The plan keeping exactly the units with a mask above 0 (nothing in layers without masks). */
    public static PruningPlan plan(ModelConfig config, double[][] heads, double[][] channels) {
        List<LayerSelection> sel = new ArrayList<>();
        for (int i = 0; i < config.numLayers(); i++) {
            int[] g = heads[i] == null ? LayerSelection.range(config.layer(i).numKvHeads()) : kept(heads[i]);
            int[] c = channels[i] == null ? LayerSelection.range(config.layer(i).intermediateSize()) : kept(channels[i]);
            sel.add(new LayerSelection(i, false, g, Allocation.headsOfGroups(config.layer(i), g), c));
        }
        List<PruningPlan.LayerPlan> layers = sel.stream()
                .map(s -> PruningPlan.LayerPlan.kept(s.layer(), s.keptKvGroups(), s.keptHeads(), s.keptChannels())).toList();
        return PruningPlan.empty().withCuts(List.of(), layers).withResult(Allocation.result(config, sel, true, true, false, 0, 0));
    }

    private static int[] kept(double[] z) {
        return IntStream.range(0, z.length).filter(j -> z[j] > 0).toArray();
    }

    /** {@code source} with each kept unit's mask value folded into its v_proj rows / gate_proj and up_proj rows. */
    public static TensorMap fold(ModelConfig config, TensorSource source, double[][] heads, double[][] channels, NDManager m) {
        TensorMap out = new TensorMap(source);
        int d = config.headDim();
        for (int i = 0; i < config.numLayers(); i++) {
            if (heads[i] != null) {
                float[] rows = new float[heads[i].length * d];
                for (int g = 0; g < heads[i].length; g++) {
                    Arrays.fill(rows, g * d, (g + 1) * d, (float) heads[i][g]);
                }
                scaleRows(out, WeightNames.attn(i, "v_proj", "weight"), rows, m);
                scaleRows(out, WeightNames.attn(i, "v_proj", "bias"), rows, m);
            }
            if (channels[i] != null) {
                float[] rows = new float[channels[i].length];
                for (int c = 0; c < rows.length; c++) {
                    rows[c] = (float) channels[i][c];
                }
                scaleRows(out, WeightNames.mlp(i, "gate_proj", "weight"), rows, m);
                scaleRows(out, WeightNames.mlp(i, "up_proj", "weight"), rows, m);
            }
        }
        return out;
    }

    private static void scaleRows(TensorMap map, String name, float[] rows, NDManager m) {
        if (!map.has(name)) {
            return;
        }
        NDArray w = map.load(name, m, DataType.FLOAT32);
        NDArray z = m.create(rows);
        map.put(name, w.getShape().dimension() == 1 ? w.mul(z) : w.mul(z.reshape(rows.length, 1)));
    }
}
