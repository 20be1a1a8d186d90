package dev.lopper.training.loop;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import dev.lopper.calibration.gradient.GradientEngine;
import dev.lopper.calibration.gradient.LayerParam;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelStats;
import dev.lopper.model.WeightNames;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Full-parameter training: one step is PyTorch's AdamW applied to the gradient that the calibration module's
 * layer-streamed backward ({@link GradientEngine}, another implementation) computes; a killed run resumes to the
 * same weights bit for bit.
 */
public class FullTrainerTest {
    @TempDir
    public static Path shared;
    public static Path model;
    public static long[] stream;

    @BeforeAll
    public static void setUp() throws Exception {
        model = shared.resolve("model");
        RandomModels.write(model, RandomModels.llama());
        SplittableRandom r = new SplittableRandom(1);
        stream = new long[4000];
        for (int i = 0; i < stream.length; i++) {
            stream[i] = r.nextInt(10) == 0 ? r.nextInt(200) : (i * 7) % 37 + 3; // tokens >= 200 never occur
        }
    }

    public static TrainingData data(TrainOptions o, int batchesPerStep) {
        return TrainingData.of(java.util.Arrays.copyOf(stream, 3600), java.util.Arrays.copyOfRange(stream, 3600, 4000),
                o.windows() * batchesPerStep, 4, o.seqLen(), o.seed());
    }

    /** Trains into {@code checkpoints}; returns the final weights. {@code onStep} may throw (a kill). */
    public static Map<String, float[]> train(Path checkpoints, TrainOptions o, TrainingMethod<FullTrainee> method,
                                      java.util.function.IntConsumer onStep, List<Trainer.Result> results) throws Exception {
        try (ModelDir d = ModelDir.open(model)) {
            FullModel m = FullModel.load(d.config(), d.checkpoint(), Device.cpu());
            java.util.function.Supplier<FullModel.LayerTransform> transform = method instanceof dev.lopper.training.method.Bip b
                    ? b::transform : () -> FullModel.LayerTransform.NONE;
            FullTrainee trainee = new FullTrainee(m, o, transform, LossTerm.CAUSAL_LM);
            Trainer<FullTrainee> t = new Trainer<>(trainee, method, data(o, method.batchesPerStep()), o, checkpoints,
                    new Trainer.Listener() {
                        @Override
                        public void step(Trainer.Point p, int total, double tps, double eta) {
                            onStep.accept(p.step());
                        }
                    });
            try {
                results.add(t.run());
            } finally {
                trainee.model().close();
            }
        }
        Path last = Checkpoints.latest(checkpoints);
        Map<String, float[]> out = new LinkedHashMap<>();
        F32Tensors.read(last.resolve(Checkpoints.PARAMS)).forEach((k, v) -> out.put(k, v.data()));
        return out;
    }

    @Test
    void oneStepIsAdamWOnTheIndependentlyComputedGradient() throws Exception {
        double lr = 1e-2;
        double wd = 0.1;
        TrainOptions o = TrainOptions.defaults(1).withBatch(2, 2, 16).withLearningRate(lr)
                .withWarmup(0).withSeed(3);
        o = new TrainOptions(o.steps(), o.microBatch(), o.accumulation(), o.seqLen(), lr, wd, 0, 0.0, 1, 1, 0, 3); // no clipping
        Path dir = shared.resolve("one");
        train(dir, o, TrainingMethod.none(), s -> { }, new ArrayList<>());
        Path ck = Checkpoints.latest(dir);
        Map<String, F32Tensors.Loaded> after = F32Tensors.read(ck.resolve(Checkpoints.PARAMS));
        Map<String, F32Tensors.Loaded> moments = F32Tensors.read(ck.resolve(Checkpoints.MOMENTS));
        long[][] windows = java.util.Arrays.copyOf(data(o, 1).train(), 4); // the step's 2 x 2 windows

        Map<String, double[]> grad = new HashMap<>();
        Map<String, float[]> before = new HashMap<>();
        try (ModelDir d = ModelDir.open(model); ai.djl.ndarray.NDManager m = ai.djl.ndarray.NDManager.newBaseManager()) {
            new GradientEngine(d.config(), d.checkpoint(), Device.cpu()).run(windows, (w, g) -> {
                for (LayerParam p : g.params()) {
                    // the gradient of the mean loss over the 4 windows = the mean of the per-window gradients
                    grad.put(p.tensorName(w.index()), g.meanGradient(p).toType(ai.djl.ndarray.types.DataType.FLOAT64, false).toDoubleArray());
                }
            }, GradientEngine.Options.defaults());
            for (String n : d.checkpoint().names()) {
                before.put(n, d.checkpoint().load(n, m).toFloatArray());
            }
        }
        assertTrue(grad.size() >= 14, "every linear of both layers has an independent gradient: " + grad.keySet());
        double b1 = 0.9, b2 = 0.999, eps = 1e-8;
        for (Map.Entry<String, double[]> e : grad.entrySet()) {
            String n = e.getKey();
            double[] g = e.getValue();
            float[] p0 = before.get(n);
            float[] p1 = after.get(n).data();
            float[] m = moments.get(n + ".exp_avg").data();
            float[] v = moments.get(n + ".exp_avg_sq").data();
            // both gradients are fp32 sums in different orders (the trainer's one batched product, the engine's fp32
            // sum over chunks, as the official codes accumulate): an element that cancels across windows carries an
            // error on the scale of the tensor's large elements, not of its own, hence the tensor-scale term
            double gMax = 0;
            for (double x : g) {
                gMax = Math.max(gMax, Math.abs(x));
            }
            double emScale = 1e-5 * (1 - b1) * gMax;
            double evScale = 1e-5 * (1 - b2) * gMax * gMax;
            for (int i = 0; i < g.length; i++) {
                double em = (1 - b1) * g[i];
                double ev = (1 - b2) * g[i] * g[i];
                double ep = p0[i] * (1 - lr * wd) - lr / (1 - b1) * em / (Math.sqrt(ev) / Math.sqrt(1 - b2) + eps);
                assertEquals(em, m[i], 1e-4 * Math.abs(em) + emScale + 1e-9, n + "[" + i + "] exp_avg");
                assertEquals(ev, v[i], 1e-3 * ev + evScale + 1e-12, n + "[" + i + "] exp_avg_sq");
                assertEquals(ep, p1[i], 2e-6 + (Math.abs(g[i]) < 1e-6 ? 1e-3 : 0), n + "[" + i + "]");
            }
        }
        // a token that never occurs: its embedding row has no gradient, so only the decoupled weight decay acts
        float[] e0 = before.get(WeightNames.EMBED);
        float[] e1 = after.get(WeightNames.EMBED).data();
        int h = 64;
        for (int j = 0; j < h; j++) {
            assertEquals(e0[250 * h + j] * (1 - lr * wd), e1[250 * h + j], 1e-7);
        }
    }

    @Test
    void killedRunResumesToTheSameWeightsBitForBit() throws Exception {
        TrainOptions o = TrainOptions.defaults(6).withBatch(2, 2, 16).withLearningRate(3e-3)
                .withWarmup(1).withEvery(2, 2).withSeed(5);
        List<Trainer.Result> straight = new ArrayList<>();
        Map<String, float[]> expected = train(shared.resolve("straight"), o, TrainingMethod.none(), s -> { }, straight);
        List<Trainer.Point> h = straight.get(0).history();
        assertTrue(h.get(h.size() - 1).valLoss() < h.get(0).valLoss() - 0.05, "validation loss should fall: " + h);

        Path killed = shared.resolve("killed");
        List<Trainer.Result> r = new ArrayList<>();
        assertThrows(IllegalStateException.class, () -> train(killed, o, TrainingMethod.none(), s -> {
            if (s == 3) {
                throw new IllegalStateException("killed");
            }
        }, r));
        assertTrue(Files.isDirectory(killed.resolve("step-000002")));
        Map<String, float[]> resumed = train(killed, o, TrainingMethod.none(), s -> { }, r);
        assertEquals(2, r.get(0).resumedFrom());
        assertEquals(straight.get(0).history(), r.get(0).history());
        same(expected, resumed);
    }

    @Test
    void memoryIsStatedFromTheParameterCount() throws Exception {
        try (ModelDir d = ModelDir.open(model); FullModel m = FullModel.load(d.config(), d.checkpoint(), Device.cpu())) {
            assertEquals(ModelStats.parameters(d.config()), m.parameterCount());
            assertEquals(16 * m.parameterCount(), FullModel.trainingBytes(d.config()));
            NDArray any = m.weights().get(WeightNames.EMBED);
            assertEquals(300 * 64, any.size());
        }
    }

    public static void same(Map<String, float[]> a, Map<String, float[]> b) {
        assertEquals(a.keySet(), b.keySet());
        a.forEach((k, v) -> assertArrayEquals(v, b.get(k), k)); // exact float equality
    }
}
