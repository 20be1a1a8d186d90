package dev.lopper.training.method;

import dev.lopper.training.loop.FullTrainee;

import dev.lopper.training.loop.Gradients;
import dev.lopper.training.loop.LossTerm;
import dev.lopper.training.loop.TrainOptions;

import dev.lopper.training.loop.F32Tensors;
import dev.lopper.training.loop.FullModel;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.loop.TrainingMethod;
import dev.lopper.training.loop.FullTrainerTest;
import dev.lopper.training.loop.TrainOptions;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.training.method.EfficientLlm;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * EfficientLLM: saliency per structure group equals a plain loop over the formula; structures go on the schedule
 * and training continues on the smaller model; a cut equals zeroing; a killed run resumes bit for bit.
 */
public class EfficientLlmTest {
    @TempDir
    static Path shared;
    static Path model;

    @BeforeAll
    static void setUp() throws Exception {
        FullTrainerTest.shared = shared;
        FullTrainerTest.setUp();
        model = FullTrainerTest.model;
    }

    /** {@code |w * g|} summed by a plain loop over the LLaMA layout: KV group g, MLP channel c. */
    static double[][] plain(ModelConfig c, Map<String, float[]> w, Map<String, float[]> g, int layer, boolean groups) {
        int h = c.hiddenSize(), d = c.headDim(), gs = c.layer(layer).groupSize();
        int kv = c.layer(layer).numKvHeads(), heads = c.layer(layer).numHeads(), inter = c.layer(layer).intermediateSize();
        String q = WeightNames.attn(layer, "q_proj", "weight"), k = WeightNames.attn(layer, "k_proj", "weight");
        String v = WeightNames.attn(layer, "v_proj", "weight"), o = WeightNames.attn(layer, "o_proj", "weight");
        String gate = WeightNames.mlp(layer, "gate_proj", "weight"), up = WeightNames.mlp(layer, "up_proj", "weight");
        String down = WeightNames.mlp(layer, "down_proj", "weight");
        if (groups) {
            double[] s = new double[kv];
            for (int u = 0; u < kv; u++) {
                for (int r = u * d; r < (u + 1) * d; r++) {
                    for (int j = 0; j < h; j++) {
                        s[u] += Math.abs(w.get(k)[r * h + j] * (double) g.get(k)[r * h + j]) + Math.abs(w.get(v)[r * h + j] * (double) g.get(v)[r * h + j]);
                    }
                }
                for (int r = u * gs * d; r < (u + 1) * gs * d; r++) { // the group's query heads: q rows, o columns
                    for (int j = 0; j < h; j++) {
                        s[u] += Math.abs(w.get(q)[r * h + j] * (double) g.get(q)[r * h + j]);
                        s[u] += Math.abs(w.get(o)[j * heads * d + r] * (double) g.get(o)[j * heads * d + r]);
                    }
                }
            }
            return new double[][] {s};
        }
        double[] s = new double[inter];
        for (int ch = 0; ch < inter; ch++) {
            for (int j = 0; j < h; j++) {
                s[ch] += Math.abs(w.get(gate)[ch * h + j] * (double) g.get(gate)[ch * h + j]);
                s[ch] += Math.abs(w.get(up)[ch * h + j] * (double) g.get(up)[ch * h + j]);
                s[ch] += Math.abs(w.get(down)[j * inter + ch] * (double) g.get(down)[j * inter + ch]);
            }
        }
        return new double[][] {s};
    }

    /** EfficientLLM's saliency of one kind ({@code groupSaliency}, {@code channelSaliency}) as its checkpointed state holds it. */
    private static double[][] saliency(EfficientLlm e, String kind) {
        return new com.fasterxml.jackson.databind.ObjectMapper().convertValue(e.state().get(kind), double[][].class);
    }

    @Test
    void saliencyIsTheTaylorSumPerGroupAccumulatedOverSteps() throws Exception {
        try (ModelDir d = ModelDir.open(model); FullModel m = FullModel.load(d.config(), d.checkpoint(), Device.cpu());
             NDManager scope = m.manager().newSubManager()) {
            EfficientLlm e = new EfficientLlm(d.config(), new EfficientLlm.Settings(0.5, 2, 0.5, 8));
            Map<String, float[]> w = new LinkedHashMap<>();
            m.weights().forEach((k, v) -> w.put(k, v.toFloatArray()));
            SplittableRandom r = new SplittableRandom(9);
            List<Map<String, float[]>> steps = new ArrayList<>();
            for (int step = 0; step < 2; step++) {
                Map<String, float[]> g = new LinkedHashMap<>();
                Map<String, NDArray> ga = new LinkedHashMap<>();
                m.weights().forEach((k, v) -> {
                    float[] x = new float[(int) v.size()];
                    for (int i = 0; i < x.length; i++) {
                        x[i] = (float) r.nextGaussian();
                    }
                    g.put(k, x);
                    ga.put(k, scope.create(x, v.getShape()));
                });
                steps.add(g);
                e.afterBackward(step, new FullTrainee(m, TrainOptions.defaults(1), () -> FullModel.LayerTransform.NONE, LossTerm.CAUSAL_LM),
                        Gradients.of(FullTrainee.GROUP, ga));
            }
            for (int l = 0; l < d.config().numLayers(); l++) {
                double[] eg = new double[d.config().layer(l).numKvHeads()];
                double[] ec = new double[d.config().layer(l).intermediateSize()];
                for (Map<String, float[]> g : steps) {
                    double[] a = plain(d.config(), w, g, l, true)[0];
                    double[] b = plain(d.config(), w, g, l, false)[0];
                    for (int i = 0; i < eg.length; i++) {
                        eg[i] += a[i];
                    }
                    for (int i = 0; i < ec.length; i++) {
                        ec[i] += b[i];
                    }
                }
                for (int i = 0; i < eg.length; i++) {
                    assertEquals(eg[i], saliency(e, "groupSaliency")[l][i], 1e-4 * eg[i], "layer " + l + " group " + i);
                }
                for (int i = 0; i < ec.length; i++) {
                    assertEquals(ec[i], saliency(e, "channelSaliency")[l][i], 1e-4 * ec[i], "layer " + l + " channel " + i);
                }
            }
        }
    }

    @Test
    void aCutEqualsZeroingTheStructures() throws Exception {
        try (ModelDir d = ModelDir.open(model); FullModel m = FullModel.load(d.config(), d.checkpoint(), Device.cpu())) {
            ModelConfig c = d.config();
            // layer 0 loses KV group 1 (heads 2, 3); layer 1 loses channels 3, 50 and 95
            int[] ch = java.util.stream.IntStream.range(0, 96).filter(i -> i != 3 && i != 50 && i != 95).toArray();
            List<LayerSelection> cut = List.of(new LayerSelection(0, false, new int[] {0}, new int[] {0, 1}, LayerSelection.range(96)),
                    new LayerSelection(1, false, new int[] {0, 1}, new int[] {0, 1, 2, 3}, ch));
            Map<String, F32Tensors.Loaded> zeroed = new LinkedHashMap<>();
            m.weights().forEach((k, v) -> zeroed.put(k, new F32Tensors.Loaded(v.getShape().getShape(), v.toFloatArray())));
            float[] o0 = zeroed.get(WeightNames.attn(0, "o_proj", "weight")).data();
            for (int row = 0; row < 64; row++) {
                for (int col = 32; col < 64; col++) {
                    o0[row * 64 + col] = 0; // heads 2 and 3 write nothing
                }
            }
            float[] down1 = zeroed.get(WeightNames.mlp(1, "down_proj", "weight")).data();
            for (int row = 0; row < 64; row++) {
                for (int col : new int[] {3, 50, 95}) {
                    down1[row * 96 + col] = 0;
                }
            }
            try (FullModel z = FullModel.of(c, zeroed, Device.cpu()); FullModel small = m.cut(cut);
                 NDManager s = NDManager.newBaseManager()) {
                // k, v rows of one group (2 x 16 x 64), q rows and o columns of its two heads (2 x 32 x 64); 3 channels x 3 x 64
                assertEquals(m.parameterCount() - 2 * 16 * 64 - 2 * 32 * 64 - 3 * 3 * 64, small.parameterCount());
                NDArray ids = s.create(new long[] {5, 9, 31, 4, 77, 12, 3, 8, 40, 41, 2, 6}, new Shape(2, 6));
                float a = z.loss(s, ids, z.weights(), FullModel.LayerTransform.NONE).getFloat();
                float b = small.loss(s, ids, small.weights(), FullModel.LayerTransform.NONE).getFloat();
                assertEquals(a, b, 1e-5);
            }
        }
    }

    @Test
    void structuresGoOnTheScheduleAndAKilledRunResumesBitForBit() throws Exception {
        TrainOptions o = TrainOptions.defaults(6).withBatch(2, 1, 16).withLearningRate(3e-3)
                .withWarmup(1).withEvery(2, 1).withSeed(5);
        ModelConfig original;
        try (ModelDir d = ModelDir.open(model)) {
            original = d.config();
        }
        EfficientLlm.Settings settings = new EfficientLlm.Settings(0.5, 2, 0.5, 6);
        assertEquals(2, settings.removalStep(1)); // round(1 x 0.5 x 6 / 2) = 2 (Math.round(1.5))
        assertEquals(3, settings.removalStep(2));
        List<Trainer.Result> straight = new ArrayList<>();
        Map<String, float[]> expected = FullTrainerTest.train(shared.resolve("e-straight"), o, new EfficientLlm(original, settings),
                s -> { }, straight);
        List<Trainer.Point> h = straight.get(0).history();
        long p0 = h.get(0).params();
        assertEquals(p0, h.get(1).params());
        assertTrue(h.get(2).params() < p0, "first removal after step 2: " + h);
        assertTrue(h.get(3).params() < h.get(2).params(), "second removal after step 3: " + h);
        assertEquals(h.get(3).params(), h.get(6).params());
        // the prunable parameters (attention + MLP) went by the ratio, to the granularity of whole units
        long prunable = 2L * (64 * 64 * 2 + 2 * 32 * 64 + 3 * 64 * 96);
        double achieved = (double) (p0 - h.get(6).params()) / prunable;
        assertEquals(0.5, achieved, 0.05, "achieved ratio");

        Path killed = shared.resolve("e-killed");
        List<Trainer.Result> r = new ArrayList<>();
        org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class, () -> FullTrainerTest.train(killed, o,
                new EfficientLlm(original, settings), s -> {
                    if (s == 3) {
                        throw new IllegalStateException("killed");
                    }
                }, r));
        Map<String, float[]> resumed = FullTrainerTest.train(killed, o, new EfficientLlm(original, settings), s -> { }, r);
        assertEquals(2, r.get(0).resumedFrom()); // after the first removal, before the second
        assertEquals(h, r.get(0).history());
        FullTrainerTest.same(expected, resumed);
    }
}
