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
 * @param heads per layer the KV-group log_alpha [numKvHeads], or null when the layer has no heads
 * @param channels per layer the channel log_alpha [intermediate], or null when the layer has no MLP
 * @param perGroup parameters one KV group of each layer holds
 * @param perChannel parameters one channel of each layer holds
 * @param prunable parameters of all heads and channels (the denominator of the sparsity)
 */
public record L0Masks(ModelConfig config, NDManager manager, NDArray[] heads, NDArray[] channels, long[] perGroup,
                      long[] perChannel, NDArray lambda1, NDArray lambda2, long prunable) implements AutoCloseable {
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
        int n = config.numLayers();
        NDArray[] h = new NDArray[n];
        NDArray[] c = new NDArray[n];
        long[] perGroup = new long[n];
        long[] perChannel = new long[n];
        long prunable = 0;
        double channelMean = HardConcrete.initialLogAlpha(droprateInit);
        for (int i = 0; i < n; i++) {
            LayerShape s = config.layer(i);
            h[i] = s.numKvHeads() > 0 ? normal(m, rnd, s.numKvHeads(), HEAD_INIT_MEAN) : null;
            c[i] = s.intermediateSize() > 0 ? normal(m, rnd, s.intermediateSize(), channelMean) : null;
            perGroup[i] = g.kvGroups(i).parametersPerUnit();
            perChannel[i] = g.mlpChannels(i).parametersPerUnit();
            prunable += perGroup[i] * s.numKvHeads() + perChannel[i] * s.intermediateSize();
        }
        return new L0Masks(config, m, h, c, perGroup, perChannel, m.zeros(new Shape(1)), m.zeros(new Shape(1)), prunable);
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
        units().forEach(u -> out.put(u.name(), u.logAlpha()));
        return out;
    }

    /**
     * One layer's log_alpha of one kind of unit (KV groups: {@code head}; channels), with the parameters one of its
     * units holds.
     */
    record Units(String name, int layer, boolean head, NDArray logAlpha, long perUnit) {
    }

    /** Every log_alpha tensor, in {@link #logAlphas} order: per layer its KV groups', then its channels'. */
    List<Units> units() {
        List<Units> out = new ArrayList<>();
        for (int i = 0; i < heads.length; i++) {
            if (heads[i] != null) {
                out.add(new Units("layers." + i + ".head_loga", i, true, heads[i], perGroup[i]));
            }
            if (channels[i] != null) {
                out.add(new Units("layers." + i + ".int_loga", i, false, channels[i], perChannel[i]));
            }
        }
        return out;
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
        List<Units> units = units();
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
