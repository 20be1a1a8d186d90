package dev.lopper.training.method;

import dev.lopper.training.job.Compresso;

import ai.djl.ndarray.NDArray;
import ai.djl.nn.Activation;
import dev.lopper.model.Scalars;

import java.util.stream.IntStream;

/**
 * The hard-concrete (stretched, rectified concrete) distribution of Louizos et al.'s L0 regularization, exactly
 * as CoFi's and Compresso's {@code models/l0_module.py} ({@code L0Module}) compute it: stretch interval
 * (limit_a, limit_b) = (-0.1, 1.1), temperature 2/3, clamp epsilon 1e-6.
 *
 * <ul>
 *   <li>sample ({@code _sample_z} / {@code quantile_concrete}): {@code z = hardtanh(sigmoid((log u - log(1 - u) +
 *       log_alpha) / T) (b - a) + a, 0, 1)}, u ~ U(eps, 1 - eps);</li>
 *   <li>{@code cdf_qz(0)}: {@code clamp(sigmoid(logit((0 - a) / (b - a)) T - log_alpha), eps, 1 - eps)} (the binary
 *       concrete's CDF: the logit is multiplied by T here, divided by T in the sample);</li>
 *   <li>expected L0 (the probability that z is not 0): {@code 1 - cdf_qz(0)};</li>
 *   <li>deterministic mask ({@code _deterministic_z}): per layer, {@code round(n - sum(1 - cdf_qz(0)))} units get 0,
 *       the smallest by {@code sigmoid(log_alpha / T * 0.8)}, the others keep that soft value.</li>
 * </ul>
 *
 * <pre>{@code
 * NDArray keep = HardConcrete.expectedL0(logAlpha);        // differentiable in logAlpha
 * double[] z = HardConcrete.deterministic(logAlphaValues); // the eval mask of one layer
 * }</pre>
 */
public final class HardConcrete {
    public static final double LIMIT_A = -0.1;
    public static final double LIMIT_B = 1.1;
    public static final double EPSILON = 1e-6;
    public static final double TEMPERATURE = 2.0 / 3.0;
    /** CoFi's {@code magical_number} (from Wang et al. 2020) scaling log_alpha in the deterministic soft mask. */
    public static final double MAGICAL_NUMBER = 0.8;
    /** Bounds {@code constrain_parameters} clamps log_alpha to after every step: log(1e-2), log(1e2). */
    public static final double MIN_LOG_ALPHA = Math.log(1e-2);
    public static final double MAX_LOG_ALPHA = Math.log(1e2);
    /** Where 0 falls before the stretch to (a, b), {@code (0 - a) / (b - a)}, and its logit ({@code cdf_qz(0)}'s). */
    private static final double ZERO = (0 - LIMIT_A) / (LIMIT_B - LIMIT_A);
    private static final double ZERO_LOGIT = Math.log(ZERO) - Math.log(1 - ZERO);

    private HardConcrete() {
    }

    /** {@code reset_loga}'s mean for a drop rate: log(1 - p) - log(p). */
    public static double initialLogAlpha(double droprate) {
        return Math.log(1 - droprate) - Math.log(droprate);
    }

    /** {@code cdf_qz(0, log_alpha)}: the probability that a sample is exactly 0. */
    public static NDArray cdfAtZero(NDArray logAlpha) {
        return Activation.sigmoid(logAlpha.neg().add(ZERO_LOGIT * TEMPERATURE)).clip(EPSILON, 1 - EPSILON);
    }

    /** {@code 1 - cdf_qz(0, log_alpha)}: each unit's expected L0 norm (probability of being kept). */
    public static NDArray expectedL0(NDArray logAlpha) {
        return cdfAtZero(logAlpha).neg().add(1);
    }

    /**
     * A training sample of z for noise {@code logitU} = log u - log(1 - u) (same shape as {@code logAlpha});
     * differentiable in log_alpha where z is strictly inside (0, 1).
     */
    public static NDArray sample(NDArray logAlpha, NDArray logitU) {
        // constants the backward keeps are libtorch-owned (Scalars), never DJL's closed from_blob numbers
        NDArray y = Activation.sigmoid(logitU.add(logAlpha).mul(Scalars.of(logAlpha.getManager(), 1 / TEMPERATURE)));
        return y.mul(Scalars.of(logAlpha.getManager(), LIMIT_B - LIMIT_A)).add(LIMIT_A).clip(0, 1);
    }

    /** log u - log(1 - u) for u drawn from {@code random} in [eps, 1 - eps] ({@code get_eps}). */
    public static float[] logitNoise(java.util.random.RandomGenerator random, int n) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            double u = EPSILON + random.nextDouble() * (1 - 2 * EPSILON);
            out[i] = (float) (Math.log(u) - Math.log(1 - u));
        }
        return out;
    }

    /**
     * {@code _deterministic_z} for one layer's log_alpha: {@code round(n - sum(1 - cdf_qz(0)))} zeros at the smallest
     * soft values {@code sigmoid(log_alpha / T * 0.8)} (ties: the higher index first), the rest keep their soft value.
     */
    public static double[] deterministic(double[] logAlpha) {
        int n = logAlpha.length;
        double expectedNonZeros = 0;
        double[] soft = new double[n];
        for (int i = 0; i < n; i++) {
            double cdf = Math.min(1 - EPSILON, Math.max(EPSILON, sigmoid(ZERO_LOGIT * TEMPERATURE - logAlpha[i])));
            expectedNonZeros += 1 - cdf;
            soft[i] = sigmoid(logAlpha[i] / TEMPERATURE * MAGICAL_NUMBER);
        }
        long zeros = Math.round(n - expectedNonZeros); // Python's round() differs only at exact .5, which a float sum does not hit in practice
        if (zeros > 0) {
            IntStream.range(0, n).boxed().sorted((x, y) -> soft[x] != soft[y] ? Double.compare(soft[x], soft[y]) : Integer.compare(y, x))
                    .limit(Math.min(zeros, n)).toList().forEach(i -> soft[i] = 0); // ranked before any is zeroed
        }
        return soft;
    }

    static double sigmoid(double x) {
        return 1 / (1 + Math.exp(-x));
    }
}
