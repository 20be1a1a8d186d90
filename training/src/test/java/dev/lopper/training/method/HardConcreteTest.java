package dev.lopper.training.method;

import dev.lopper.training.job.Compresso;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.model.ModelDir;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The hard-concrete formulas against plain loops written out from the official l0_module.py (CoFi / Compresso):
 * limit_a -0.1, limit_b 1.1, temperature 2/3, eps 1e-6, magical number 0.8.
 */
public class HardConcreteTest {
    @TempDir
    Path tmp;

    // ---- the official formulas, one scalar at a time (l0_module.py), written out independently
    private static double sig(double x) {
        return 1.0 / (1.0 + Math.exp(-x));
    }

    /** cdf_qz(0, loga): xn = 0.1 / 1.2 = 1/12; logits = log(1/12) - log(11/12) = -log 11. */
    private static double refCdf0(double loga) {
        double v = sig(-Math.log(11.0) * (2.0 / 3.0) - loga);
        return Math.min(1 - 1e-6, Math.max(1e-6, v));
    }

    /** quantile_concrete then hardtanh(0, 1). */
    private static double refSample(double loga, double u) {
        double y = sig((Math.log(u) - Math.log(1 - u) + loga) / (2.0 / 3.0));
        return Math.min(1, Math.max(0, y * 1.2 - 0.1));
    }

    private static final double[] LOGA = {-4.6, -2.0, -0.5, 0.0, 0.3, 1.7, 4.595, 10.0};

    @Test
    void cdfAndExpectedL0MatchTheOfficialFormula() {
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            float[] f = new float[LOGA.length];
            for (int i = 0; i < f.length; i++) {
                f[i] = (float) LOGA[i];
            }
            NDArray a = m.create(f);
            float[] cdf = HardConcrete.cdfAtZero(a).toFloatArray();
            float[] l0 = HardConcrete.expectedL0(a).toFloatArray();
            for (int i = 0; i < f.length; i++) {
                assertEquals(refCdf0(f[i]), cdf[i], 1e-6, "cdf at loga " + f[i]);
                assertEquals(1 - refCdf0(f[i]), l0[i], 1e-6, "L0 at loga " + f[i]);
            }
            // hand values: loga 0 -> sigmoid(-2/3 log 11) = 1 / (1 + 11^(2/3)) = 0.16400...
            assertEquals(1 / (1 + Math.pow(11, 2.0 / 3.0)), cdf[3], 1e-6);
            // droprate_init 0.01 -> loga = log(99) and keep probability 1 - 1/(1 + 99 11^(2/3)) = 0.99980
            assertEquals(Math.log(99), HardConcrete.initialLogAlpha(0.01), 1e-12);
        }
    }

    @Test
    void samplesMatchQuantileConcreteWithHardtanh() {
        double[] us = {1e-6, 0.01, 0.2, 0.5, 0.4, 0.99, 1 - 1e-6, 0.37};
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            float[] a = new float[LOGA.length];
            float[] noise = new float[LOGA.length];
            for (int i = 0; i < a.length; i++) {
                a[i] = (float) LOGA[i];
                noise[i] = (float) (Math.log(us[i]) - Math.log(1 - us[i]));
            }
            float[] z = HardConcrete.sample(m.create(a), m.create(noise)).toFloatArray();
            int inside = 0;
            for (int i = 0; i < a.length; i++) {
                assertEquals(refSample(a[i], us[i]), z[i], 2e-6, "z for loga " + a[i] + ", u " + us[i]);
                inside += z[i] > 0 && z[i] < 1 ? 1 : 0;
            }
            assertTrue(inside >= 2, "some samples must be strictly between 0 and 1, others clipped");
        }
        // the noise helper draws u in [eps, 1 - eps] and returns its logit
        float[] n = HardConcrete.logitNoise(new SplittableRandom(3), 1000);
        double bound = Math.log(1 - 1e-6) - Math.log(1e-6);
        for (float v : n) {
            assertTrue(Math.abs(v) <= bound + 1e-3);
        }
    }

    @Test
    void deterministicMaskZeroesRoundOfExpectedZerosAtTheSmallestSoftValues() {
        double[] loga = {4.0, -3.0, 0.5, -1.0, 2.0, -4.0};
        // expected zeros = round(6 - sum(1 - cdf)) computed by hand with the reference cdf
        double nonZero = 0;
        for (double a : loga) {
            nonZero += 1 - refCdf0(a);
        }
        long zeros = Math.round(6 - nonZero);
        assertEquals(2, zeros, "the hand example has two expected zeros (sum of L0 = " + nonZero + ")");
        double[] z = HardConcrete.deterministic(loga);
        // the two smallest soft values sigmoid(loga / (2/3) * 0.8) are those of loga -4 and -3
        double[] expect = new double[6];
        for (int i = 0; i < 6; i++) {
            expect[i] = loga[i] == -4.0 || loga[i] == -3.0 ? 0 : sig(loga[i] * 1.5 * 0.8);
        }
        assertArrayEquals(expect, z, 1e-12);
        // all open: nothing zeroed, values near 1 but soft
        double[] open = HardConcrete.deterministic(new double[] {4.6, 4.6, 4.6});
        for (double v : open) {
            assertEquals(sig(4.6 * 1.2), v, 1e-12);
        }
    }

    @Test
    void expectedSizeIsTheParameterWeightedSumOfKeepProbabilities() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(3));
        ModelConfig c;
        try (ModelDir md = ModelDir.open(dir)) {
            c = md.config();
        }
        try (L0Masks masks = L0Masks.create(c, 0.3, 9, Device.cpu())) {
            // move log_alpha away from its init so every unit differs
            SplittableRandom r = new SplittableRandom(4);
            List<NDArray> list = new ArrayList<>(masks.logAlphas().values());
            for (NDArray a : list) {
                float[] v = new float[(int) a.size()];
                for (int j = 0; j < v.length; j++) {
                    v[j] = (float) (r.nextDouble() * 8 - 4);
                }
                dev.lopper.training.loop.F32Tensors.copyInto(a, v);
            }
            // plain loop: a KV group holds q rows of its (heads / kv) heads, k and v rows, o columns: 2 (g + 1) d h;
            // a channel gate, up rows and a down column: 3 h (hidden 64, head_dim 16, 4 heads over 2 KV heads)
            long h = 64;
            long d = 16;
            long perGroup = 2 * (2 + 1) * d * h;
            long perChannel = 3 * h;
            double expected = 0;
            long prunable = 0;
            for (int i = 0; i < 3; i++) {
                LayerShape s = c.layer(i);
                for (float a : masks.logAlphas().get("layers." + i + ".head_loga").toFloatArray()) {
                    expected += (1 - refCdf0(a)) * perGroup;
                }
                for (float a : masks.logAlphas().get("layers." + i + ".int_loga").toFloatArray()) {
                    expected += (1 - refCdf0(a)) * perChannel;
                }
                prunable += perGroup * s.numKvHeads() + perChannel * s.intermediateSize();
            }
            assertEquals(prunable, masks.prunable());
            assertEquals(1 - expected / prunable, masks.expectedSparsity(), 1e-5);
            try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
                assertEquals(expected, masks.expectedSize(list).getFloat(), expected * 1e-6);
            }
        }
    }

    @Test
    void initialLogAlphaFollowsResetLoga() throws Exception {
        Path dir = tmp.resolve("init");
        RandomModels.write(dir, RandomModels.llama());
        try (ModelDir md = ModelDir.open(dir); L0Masks masks = L0Masks.create(md.config(), 0.01, 1, Device.cpu())) {
            for (int i = 0; i < md.config().numLayers(); i++) {
                for (float a : masks.logAlphas().get("layers." + i + ".head_loga").toFloatArray()) {
                    assertEquals(10.0, a, 0.06); // N(10, 0.01): 6 sigma
                }
                for (float a : masks.logAlphas().get("layers." + i + ".int_loga").toFloatArray()) {
                    assertEquals(Math.log(0.99 / 0.01), a, 0.06);
                }
            }
            assertEquals(0f, masks.lambda1().getFloat(0));
            masks.constrain();
            for (float a : masks.logAlphas().get("layers.0.head_loga").toFloatArray()) {
                assertEquals(Math.log(100), a, 1e-6, "constrain_parameters clamps to log(1e2)");
            }
        }
    }
}
