package dev.lopper.training.method;

import dev.lopper.training.loop.Trainer;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.layer.Param;
import dev.lopper.training.lora.LoraAdapters;

import java.util.List;
import java.util.Map;

/**
 * LoRAPrune's importance of one optimizer step ({@code loraprune/utils.py::compute_sensitivity} and
 * {@code update_sensitivity_dict}, {@code prune_metric='lora'}), per layer and coupled group:
 * <ol>
 *   <li>the full weight's gradient estimated from the adapters' gradients only:
 *       {@code G = dB A + B dA - dB dA} (no scaling factor, as the official code);</li>
 *   <li>{@code S = |G * (W + s B A)|}, {@code s = alpha / r};</li>
 *   <li>summed per unit: rows of q/k/v/gate/up, columns of o/down (the official {@code transpose}); a KV group
 *       covers its {@code r} query heads' q rows and o columns and its k/v rows (the official code reshapes by a
 *       hard-coded 32 heads, which splits GQA k/v wrongly: docs/CRITERIA.md);</li>
 *   <li>each module's vector l2-normalized ({@code / (||v|| + 1e-8)}), then summed over the group's modules.</li>
 * </ol>
 * The base weight W is read from the frozen checkpoint; no gradient of it exists (only A and B require
 * gradients in {@code Trainer}).
 *
 * <pre>{@code
 * UnitScores s = LoraPruneImportance.of(config, weights, lora, grads);
 * s.groups()[3][1];   // layer 3, KV group 1
 * }</pre>
 */
public final class LoraPruneImportance {
    private LoraPruneImportance() {
    }

    /** @param grads dA, dB per adapter in {@link LoraAdapters#tensors()}'s order (A then B) */
    public static UnitScores of(ModelConfig config, TensorSource weights, LoraAdapters lora, List<NDArray> grads) {
        UnitScores out = UnitScores.zeros(config);
        double scale = lora.config().scale();
        List<LoraAdapters.Adapter> adapters = lora.adapters();
        try (NDManager m = lora.manager().newSubManager()) {
            for (int i = 0; i < adapters.size(); i++) {
                LoraAdapters.Adapter ad = adapters.get(i);
                NDArray a = ad.a();
                NDArray b = ad.b();
                NDArray da = grads.get(2 * i);
                NDArray db = grads.get(2 * i + 1);
                NDArray g = db.matMul(a).add(b.matMul(da)).sub(db.matMul(da));
                NDArray ba = b.matMul(a).mul(scale);
                for (Map.Entry<Param, long[]> part : ad.rows().entrySet()) {
                    Param p = part.getKey();
                    long[] r = part.getValue();
                    NDIndex rows = new NDIndex(r[0] + ":" + r[1]);
                    NDArray w = weights.load(p.tensorName(ad.layer()), m, DataType.FLOAT32);
                    NDArray s = g.get(rows).mul(w.add(ba.get(rows))).abs();
                    boolean columns = p == Param.O || p == Param.DOWN;
                    double[] v = s.sum(new int[] {columns ? 0 : 1}).toType(DataType.FLOAT64, false).toDoubleArray(); // exact widening
                    add(config, ad.layer(), p, v, out);
                }
            }
        }
        return out;
    }

    /** Folds one module's per-row (or per-column) sums into units, normalizes them and adds them to the groups. */
    private static void add(ModelConfig config, int layer, Param p, double[] v, UnitScores into) {
        LayerShape s = config.layer(layer);
        int d = config.headDim();
        boolean mlp = p == Param.GATE || p == Param.UP || p == Param.DOWN;
        double[] units;
        if (mlp) {
            units = v;
        } else {
            // q rows / o columns: query head h covers [h d, (h + 1) d) and belongs to group h / r; k/v: group g's d rows
            int per = (p == Param.Q || p == Param.O) ? s.groupSize() * d : d;
            units = new double[s.numKvHeads()];
            for (int j = 0; j < v.length; j++) {
                units[j / per] += v[j];
            }
        }
        double norm = 0;
        for (double x : units) {
            norm += x * x;
        }
        norm = Math.sqrt(norm) + 1e-8;
        double[] target = mlp ? into.channels()[layer] : into.groups()[layer];
        for (int j = 0; j < units.length; j++) {
            target[j] += units[j] / norm;
        }
    }
}
