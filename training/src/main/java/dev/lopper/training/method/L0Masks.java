package dev.lopper.training.method;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.Scalars;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.training.loop.F32Tensors;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Compresso's trainable structure masks and Lagrange multipliers (CoFi's {@code L0Module} with
 * {@code pruning_type structured_heads+structured_mlp}): per layer one log_alpha per KV group ({@code head_loga},
 * initialized N(10, 0.01) as the official {@code initialize_structured_head}) and one per MLP channel
 * ({@code int_loga}, N(log(1 - p) - log(p), 0.01) for {@code droprate_init} p), and the multipliers lambda_1,
 * lambda_2 (0). The expected size ({@code get_num_parameters_and_constraint}) is the sum over units of
 * {@code (1 - cdf_qz(0)) x} the unit's parameters, counted by {@link StructureGraph} (a KV group: its q/k/v rows,
 * o columns and q/k/v biases; a channel: 3 x hidden); the expected sparsity is {@code 1 - expected / prunable}.
 *
 * <pre>{@code
 * try (L0Masks masks = L0Masks.create(config, 0.01, 42, Device.cpu())) {
 *     double s = masks.expectedSparsity();
 * }
 * }</pre>
 *
 * @param units every log_alpha tensor with what it masks: per layer its KV groups' ({@code layers.I.head_loga}),
 *              then its channels' ({@code layers.I.int_loga}); a layer without heads or MLP has none of that kind
 * @param prunable parameters of all heads and channels (the denominator of the sparsity)
 */
public record L0Masks(NDManager manager, List<Units> units, NDArray lambda1, NDArray lambda2, long prunable) implements AutoCloseable {
    /** {@code initialize_structured_head}'s log_alpha mean (heads start fully open). */
    public static final double HEAD_INIT_MEAN = 10;

    /** Fresh masks for {@code config}: log_alpha drawn from {@code seed} as {@code reset_loga}, multipliers 0. */
    public static L0Masks create(ModelConfig config, double droprateInit, long seed, Device device) {
        if (!(droprateInit > 0 && droprateInit < 1)) {
            throw new IllegalArgumentException("--droprate-init " + droprateInit + ": expected a value in (0, 1)");
        }
        NDManager m = NDManager.newBaseManager(device);
        SplittableRandom rnd = new SplittableRandom(seed);
        StructureGraph g = StructureGraph.of(config);
        List<Units> units = new ArrayList<>();
        long prunable = 0;
        double channelMean = HardConcrete.initialLogAlpha(droprateInit);
        for (int i = 0; i < config.numLayers(); i++) {
            LayerShape s = config.layer(i);
            long perGroup = g.kvGroups(i).parametersPerUnit();
            long perChannel = g.mlpChannels(i).parametersPerUnit();
            if (s.numKvHeads() > 0) {
                units.add(new Units("layers." + i + ".head_loga", i, true, normal(m, rnd, s.numKvHeads(), HEAD_INIT_MEAN), perGroup));
            }
            if (s.intermediateSize() > 0) {
                units.add(new Units("layers." + i + ".int_loga", i, false, normal(m, rnd, s.intermediateSize(), channelMean), perChannel));
            }
            prunable += perGroup * s.numKvHeads() + perChannel * s.intermediateSize();
        }
        return new L0Masks(m, List.copyOf(units), m.zeros(new Shape(1)), m.zeros(new Shape(1)), prunable);
    }

    private static NDArray normal(NDManager m, SplittableRandom rnd, int n, double mean) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (mean + 1e-2 * rnd.nextGaussian());
        }
        return F32Tensors.owned(m, v, new Shape(n));
    }

    /** The log_alpha tensors by name ({@code layers.I.head_loga}, {@code layers.I.int_loga}), in a fixed order. */
    public Map<String, NDArray> logAlphas() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        units.forEach(u -> out.put(u.name(), u.logAlpha()));
        return out;
    }

    /**
     * One layer's log_alpha of one kind of unit (KV groups: {@code head}; channels), with the parameters one of its
     * units holds.
     */
    public record Units(String name, int layer, boolean head, NDArray logAlpha, long perUnit) {
    }

    /** {@code lambda_1}, {@code lambda_2}. */
    public Map<String, NDArray> lambdas() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        out.put("lambda_1", lambda1);
        out.put("lambda_2", lambda2);
        return out;
    }

    /**
     * The expected number of parameters kept, from log_alpha arrays in {@link #logAlphas} order (aliases that may
     * be autograd leaves): differentiable.
     */
    public NDArray expectedSize(List<NDArray> logAlphas) {
        NDArray total = null;
        for (int k = 0; k < units.size(); k++) {
            NDArray a = logAlphas.get(k);
            NDArray t = HardConcrete.expectedL0(a).sum().mul(Scalars.of(a.getManager(), units.get(k).perUnit())); // owned: kept by the backward
            total = total == null ? t : total.add(t);
        }
        return total;
    }

    /** {@code 1 - expected size / prunable} of the current log_alpha (no gradients). */
    public double expectedSparsity() {
        try (NDManager scope = manager.newSubManager()) {
            List<NDArray> l = new ArrayList<>();
            for (NDArray a : logAlphas().values()) {
                NDArray x = a.duplicate();
                x.attach(scope);
                l.add(x);
            }
            return 1 - expectedSize(l).getFloat() / prunable;
        }
    }

    /** Clamps every log_alpha to [log 1e-2, log 1e2] in place ({@code constrain_parameters}). */
    public void constrain() {
        for (NDArray a : logAlphas().values()) {
            float[] v = a.toFloatArray();
            for (int j = 0; j < v.length; j++) {
                v[j] = (float) Math.min(HardConcrete.MAX_LOG_ALPHA, Math.max(HardConcrete.MIN_LOG_ALPHA, v[j]));
            }
            F32Tensors.copyInto(a, v); // libtorch-owned storage (see F32Tensors), not NDArray.set(float[])
        }
    }

    @Override
    public void close() {
        manager.close();
    }
}
