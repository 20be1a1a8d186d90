package dev.lopper.training.method;

import dev.lopper.training.loop.LossTerm;
import dev.lopper.training.loop.TrainOptions;

import dev.lopper.training.loop.FullModel;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.loop.TrainingMethod;
import dev.lopper.training.loop.FullTrainerTest;
import dev.lopper.training.loop.FullTrainee;
import dev.lopper.training.loop.TrainOptions;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.training.method.Bip;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * BiP, structured: scores start at unit weight norms and the mask is the per-layer top-k; one upper-level step is
 * SGD on {@code g - lr2 g^2} with {@code g} from finite differences of the loss in the mask; a masked model equals
 * the cut one; a killed run resumes bit for bit and ends as a plain smaller model.
 */
public class BipTest {
    @TempDir
    static Path shared;
    static Path model;
    private static final long[] IDS = {5, 9, 31, 4, 77, 12, 3, 8, 40, 41, 2, 6, 7, 19, 23, 11, 60, 61, 62, 5, 9, 31, 4, 1};

    @BeforeAll
    static void setUp() throws Exception {
        FullTrainerTest.shared = shared;
        FullTrainerTest.setUp();
        model = FullTrainerTest.model;
    }

    /** Unit L2 norms by a plain loop: KV group u (k, v rows; its heads' q rows and o columns), channel c. */
    static double[] norms(Map<String, float[]> w, int layer, boolean groups) {
        String q = WeightNames.attn(layer, "q_proj", "weight"), k = WeightNames.attn(layer, "k_proj", "weight");
        String v = WeightNames.attn(layer, "v_proj", "weight"), o = WeightNames.attn(layer, "o_proj", "weight");
        int h = 64;
        if (groups) {
            double[] s = new double[2];
            for (int u = 0; u < 2; u++) {
                for (int j = 0; j < h; j++) {
                    for (int r = u * 16; r < (u + 1) * 16; r++) {
                        s[u] += sq(w.get(k)[r * h + j]) + sq(w.get(v)[r * h + j]);
                    }
                    for (int r = u * 32; r < (u + 1) * 32; r++) {
                        s[u] += sq(w.get(q)[r * h + j]) + sq(w.get(o)[j * 64 + r]);
                    }
                }
                s[u] = Math.sqrt(s[u]);
            }
            return s;
        }
        double[] s = new double[96];
        for (int c = 0; c < 96; c++) {
            for (int j = 0; j < h; j++) {
                s[c] += sq(w.get(WeightNames.mlp(layer, "gate_proj", "weight"))[c * h + j]) + sq(w.get(WeightNames.mlp(layer, "up_proj", "weight"))[c * h + j])
                        + sq(w.get(WeightNames.mlp(layer, "down_proj", "weight"))[j * 96 + c]);
            }
            s[c] = Math.sqrt(s[c]);
        }
        return s;
    }

    private static double sq(float x) {
        return (double) x * x;
    }

    private static Map<String, float[]> floats(FullModel m) {
        Map<String, float[]> w = new LinkedHashMap<>();
        m.weights().forEach((k, v) -> w.put(k, v.toFloatArray()));
        return w;
    }

    @Test
    void scoresStartAtUnitNormsAndTheMaskKeepsTheLargestPerLayer() throws Exception {
        try (ModelDir d = ModelDir.open(model); FullModel m = FullModel.load(d.config(), d.checkpoint(), Device.cpu())) {
            Bip bip = Bip.of(m, 0.5, 10);
            Map<String, float[]> w = floats(m);
            for (int l = 0; l < 2; l++) {
                double[] g = norms(w, l, true);
                double[] c = norms(w, l, false);
                for (int i = 0; i < 2; i++) {
                    assertEquals(g[i], scores(bip, "groupScores")[l][i], 1e-5 * g[i]);
                }
                for (int i = 0; i < 96; i++) {
                    assertEquals(c[i], scores(bip, "channelScores")[l][i], 1e-5 * c[i]);
                }
                // int(0.5 x 96) = 48 channels go: those below the median norm
                double[] sorted = c.clone();
                Arrays.sort(sorted);
                float[] mask = bip.mask(scores(bip, "channelScores")[l]);
                for (int i = 0; i < 96; i++) {
                    assertEquals(c[i] > sorted[47] ? 1f : 0f, mask[i], "layer " + l + " channel " + i);
                }
                assertArrayEquals(new float[] {g[0] > g[1] ? 1f : 0f, g[0] > g[1] ? 0f : 1f}, bip.mask(scores(bip, "groupScores")[l]));
            }
        }
    }

    /** BiP's scores of one kind ({@code groupScores}, {@code channelScores}), [layer][unit], as its checkpointed state holds them. */
    private static float[][] scores(Bip bip, String kind) {
        return new com.fasterxml.jackson.databind.ObjectMapper().convertValue(bip.state().get(kind), float[][].class);
    }

    /** The loss with the test's own masking: every element of each unit times {@code hard}, unit {@code (l, u)} times {@code value}. */
    private static double loss(FullModel m, Bip bip, int layer, boolean group, int unit, float value) {
        Map<String, float[]> w = floats(m);
        for (int l = 0; l < 2; l++) {
            float[] mg = bip.mask(scores(bip, "groupScores")[l]);
            float[] mc = bip.mask(scores(bip, "channelScores")[l]);
            if (l == layer) {
                (group ? mg : mc)[unit] = value;
            }
            // every element a unit's score covers: q rows / o columns of its heads (group = head / 2, head = index / 16),
            // k/v rows of its head_dim (group = row / 16), a channel's gate/up row and down column
            float[] q = w.get(WeightNames.attn(l, "q_proj", "weight"));
            float[] k = w.get(WeightNames.attn(l, "k_proj", "weight"));
            float[] v = w.get(WeightNames.attn(l, "v_proj", "weight"));
            float[] o = w.get(WeightNames.attn(l, "o_proj", "weight"));
            float[] gate = w.get(WeightNames.mlp(l, "gate_proj", "weight"));
            float[] up = w.get(WeightNames.mlp(l, "up_proj", "weight"));
            float[] down = w.get(WeightNames.mlp(l, "down_proj", "weight"));
            for (int r = 0; r < 64; r++) {
                for (int col = 0; col < 64; col++) {
                    o[r * 64 + col] *= mg[col / 32];
                    q[r * 64 + col] *= mg[r / 32];
                }
                for (int c = 0; c < 96; c++) {
                    down[r * 96 + c] *= mc[c];
                }
            }
            for (int r = 0; r < 32; r++) {
                for (int col = 0; col < 64; col++) {
                    k[r * 64 + col] *= mg[r / 16];
                    v[r * 64 + col] *= mg[r / 16];
                }
            }
            for (int c = 0; c < 96; c++) {
                for (int col = 0; col < 64; col++) {
                    gate[c * 64 + col] *= mc[c];
                    up[c * 64 + col] *= mc[c];
                }
            }
        }
        try (NDManager s = NDManager.newBaseManager()) {
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            w.forEach((k, v) -> arrays.put(k, s.create(v, m.weights().get(k).getShape())));
            return m.loss(s, s.create(IDS, new Shape(2, 12)), arrays, FullModel.LayerTransform.NONE).getFloat();
        }
    }

    @Test
    void maskRateFollowsTheOfficialStepScheduleOfTrainPy() {
        // train.py: mask_lr_policy = get_lr_policy('step') = step_schedule: x0.1 from epoch >= 0.5 E, x0.01 from >= 0.75 E
        Bip.Settings s = new Bip.Settings(0.5, 0.1, 1e-4, 0.9, 1e-4, 8);
        double[] expected = {0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001};
        for (int step = 0; step < 8; step++) {
            assertEquals(expected[step], s.maskLrAt(step), 1e-15, "step " + step);
        }
    }

    @Test
    void oneUpperStepIsSgdOnTheImplicitGradientOfTheBilinearScheme() throws Exception {
        try (ModelDir d = ModelDir.open(model); FullModel m = FullModel.load(d.config(), d.checkpoint(), Device.cpu())) {
            double lr = 0.1, lr2 = 5.0, wd = 1e-4; // lr2 large so the implicit term g^2 shows
            Bip bip = new Bip(m, new Bip.Settings(0.5, lr, lr2, 0.9, wd, 100));
            float[][] g0 = scores(bip, "groupScores");
            float[][] c0 = scores(bip, "channelScores");
            double[][] expectG = new double[2][2];
            double[][] expectC = new double[2][8];
            double eps = 1e-2;
            for (int l = 0; l < 2; l++) {
                for (int u = 0; u < 2; u++) {
                    float hard = bip.mask(g0[l])[u];
                    double g = Math.signum(g0[l][u]) * (loss(m, bip, l, true, u, (float) (hard + eps)) - loss(m, bip, l, true, u, (float) (hard - eps))) / (2 * eps);
                    expectG[l][u] = -lr * (g - lr2 * g * g + wd * g0[l][u]);
                }
                for (int u = 0; u < 8; u++) {
                    float hard = bip.mask(c0[l])[u];
                    double g = Math.signum(c0[l][u]) * (loss(m, bip, l, false, u, (float) (hard + eps)) - loss(m, bip, l, false, u, (float) (hard - eps))) / (2 * eps);
                    expectC[l][u] = -lr * (g - lr2 * g * g + wd * c0[l][u]);
                }
            }
            bip.afterUpdate(0, new FullTrainee(m, TrainOptions.defaults(1), bip::transform, LossTerm.CAUSAL_LM), new TrainingMethod.StepData() {
                @Override
                public NDArray extraBatch(NDManager scope, int step, int micro) {
                    return scope.create(IDS, new Shape(2, 12));
                }

                @Override
                public int accumulation() {
                    return 1;
                }
            });
            for (int l = 0; l < 2; l++) {
                for (int u = 0; u < 2; u++) {
                    double delta = scores(bip, "groupScores")[l][u] - g0[l][u];
                    assertEquals(expectG[l][u], delta, 2e-5 + 0.03 * Math.abs(expectG[l][u]), "layer " + l + " group " + u);
                }
                for (int u = 0; u < 8; u++) {
                    double delta = scores(bip, "channelScores")[l][u] - c0[l][u];
                    assertEquals(expectC[l][u], delta, 2e-5 + 0.03 * Math.abs(expectC[l][u]), "layer " + l + " channel " + u);
                }
            }
        }
    }

    @Test
    void maskedEqualsCutAndAKilledRunResumesToAPlainSmallerModel() throws Exception {
        try (ModelDir d = ModelDir.open(model); FullModel m = FullModel.load(d.config(), d.checkpoint(), Device.cpu());
             NDManager s = NDManager.newBaseManager()) {
            Bip bip = Bip.of(m, 0.5, 10);
            NDArray ids = s.create(IDS, new Shape(2, 12));
            float masked = m.loss(s, ids, m.weights(), bip.transform()).getFloat();
            try (FullModel small = m.cut(bip.kept())) {
                assertEquals(masked, small.loss(s, ids, small.weights(), FullModel.LayerTransform.NONE).getFloat(), 1e-5);
            }
        }
        TrainOptions o = TrainOptions.defaults(4).withBatch(2, 1, 16).withLearningRate(3e-3)
                .withWarmup(1).withEvery(2, 1).withSeed(5);
        ModelConfig config;
        List<Trainer.Result> straight = new ArrayList<>();
        Map<String, float[]> expected;
        try (ModelDir d = ModelDir.open(model); FullModel init = FullModel.load(d.config(), d.checkpoint(), Device.cpu())) {
            config = d.config();
            expected = FullTrainerTest.train(shared.resolve("b-straight"), o, Bip.of(init, 0.5, 4), x -> { }, straight);
        }
        List<Trainer.Point> h = straight.get(0).history();
        // uniform per layer: 1 of 2 KV groups (2 of 4 heads) and 48 of 96 channels go from each layer
        long cut = 2L * (2 * 16 * 64 + 2 * 32 * 64 + 48 * 3 * 64);
        assertEquals(h.get(0).params() - cut, h.get(4).params());
        assertEquals(h.get(0).params(), h.get(3).params());
        Path killed = shared.resolve("b-killed");
        List<Trainer.Result> r = new ArrayList<>();
        try (ModelDir d = ModelDir.open(model); FullModel init = FullModel.load(config, d.checkpoint(), Device.cpu())) {
            assertThrows(IllegalStateException.class, () -> FullTrainerTest.train(killed, o, Bip.of(init, 0.5, 4), x -> {
                if (x == 3) {
                    throw new IllegalStateException("killed");
                }
            }, r));
        }
        try (ModelDir d = ModelDir.open(model); FullModel init = FullModel.load(config, d.checkpoint(), Device.cpu())) {
            Map<String, float[]> resumed = FullTrainerTest.train(killed, o, Bip.of(init, 0.5, 4), x -> { }, r);
            assertEquals(2, r.get(0).resumedFrom());
            assertEquals(h, r.get(0).history());
            FullTrainerTest.same(expected, resumed);
        }
    }
}
