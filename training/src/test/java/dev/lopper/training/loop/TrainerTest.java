package dev.lopper.training.loop;

import dev.lopper.training.lora.LoraTrainee;

import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.LoraConfig;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Training lowers the loss; a killed or interrupted run resumes to the same adapter as an uninterrupted one. */
public class TrainerTest {
    @TempDir
    static Path shared;
    static Path model;
    static TrainingData data;

    private static final TrainOptions OPTIONS = TrainOptions.defaults(8).withBatch(2, 2, 16)
            .withLearningRate(1e-2).withWarmup(2).withEvery(2, 2).withSeed(5);

    @BeforeAll
    static void setUp() throws Exception {
        model = shared.resolve("model");
        RandomModels.write(model, RandomModels.llama());
        // a repetitive stream (a 37-token cycle with noise): easy to learn, so the loss must fall
        SplittableRandom r = new SplittableRandom(1);
        long[] stream = new long[4000];
        for (int i = 0; i < stream.length; i++) {
            stream[i] = r.nextInt(10) == 0 ? r.nextInt(300) : (i * 7) % 37 + 3;
        }
        data = TrainingData.of(java.util.Arrays.copyOf(stream, 3600), java.util.Arrays.copyOfRange(stream, 3600, 4000),
                OPTIONS.windows(), 8, 16, OPTIONS.seed());
    }

    /** Runs training into {@code checkpoints}; {@code onStep} may throw (a kill) or stop the trainer. */
    private static Map<String, float[]> train(Path checkpoints, java.util.function.BiConsumer<Trainer<?>, Integer> onStep,
                                              List<Trainer.Result> results) throws Exception {
        try (ModelDir d = ModelDir.open(model); LlamaModel lm = d.loadModel(Device.cpu());
             LoraAdapters lora = LoraAdapters.create(d.config(), LoraConfig.defaults(), OPTIONS.seed(), Device.cpu())) {
            List<Trainer<LoraTrainee>> t = new java.util.ArrayList<>();
            t.add(new Trainer<>(new LoraTrainee(LossPass.inMemory(lm, LossTerm.CAUSAL_LM), lora, OPTIONS), TrainingMethod.none(), data,
                    OPTIONS, checkpoints, new Trainer.Listener() {
                        @Override
                        public void step(Trainer.Point p, int total, double tps, double eta) {
                            onStep.accept(t.get(0), p.step());
                        }
                    }));
            results.add(t.get(0).run());
            // nothing leaks across steps: the manager holds A, B and AdamW's two moments per tensor, nothing else
            int arrays = ((ai.djl.ndarray.BaseNDManager) lora.manager()).getManagedArrays().size();
            assertEquals(3 * lora.tensors().size(), arrays, "arrays left in the adapters' manager");
            Map<String, float[]> out = new LinkedHashMap<>();
            for (Map.Entry<String, NDArray> e : lora.tensors().entrySet()) {
                out.put(e.getKey(), e.getValue().toFloatArray());
            }
            return out;
        }
    }

    @Test
    void killedAndInterruptedRunsResumeToTheSameAdapterBitForBit() throws Exception {
        List<Trainer.Result> straight = new java.util.ArrayList<>();
        Map<String, float[]> expected = train(shared.resolve("straight"), (t, s) -> { }, straight);
        Trainer.Result full = straight.get(0);
        assertEquals(8, full.step());
        double firstVal = full.history().stream().filter(p -> p.valLoss() != null).findFirst().orElseThrow().valLoss();
        double lastVal = full.history().get(full.history().size() - 1).valLoss();
        assertTrue(lastVal < firstVal - 0.1, "validation loss should fall: " + firstVal + " -> " + lastVal + " " + full.history());

        // a kill after step 5: everything in memory is lost, the checkpoint of step 4 remains
        Path killed = shared.resolve("killed");
        List<Trainer.Result> r = new java.util.ArrayList<>();
        assertThrows(IllegalStateException.class, () -> train(killed, (t, s) -> {
            if (s == 5) {
                throw new IllegalStateException("killed");
            }
        }, r));
        assertTrue(Files.isDirectory(killed.resolve("step-000004")));
        Map<String, float[]> resumed = train(killed, (t, s) -> { }, r);
        assertEquals(4, r.get(0).resumedFrom());
        same(expected, resumed);
        assertEquals(full.history(), r.get(0).history());

        // Ctrl-C after step 3: a checkpoint of step 3 is written before returning
        Path stopped = shared.resolve("stopped");
        List<Trainer.Result> s = new java.util.ArrayList<>();
        train(stopped, (t, step) -> {
            if (step == 3) {
                t.requestStop();
            }
        }, s);
        assertTrue(s.get(0).interrupted());
        assertEquals(3, s.get(0).step());
        assertTrue(Files.isDirectory(stopped.resolve("step-000003")));
        same(expected, train(stopped, (t, step) -> { }, s));
        assertEquals(3, s.get(1).resumedFrom());
        assertFalse(s.get(1).interrupted());
    }

    @Test
    void resumeWithOtherOptionsIsRefused() throws Exception {
        Path dir = shared.resolve("other");
        train(dir, (t, s) -> { }, new java.util.ArrayList<>());
        try (ModelDir d = ModelDir.open(model); LlamaModel lm = d.loadModel(Device.cpu());
             LoraAdapters lora = LoraAdapters.create(d.config(), new LoraConfig(4, 16, 0.05, java.util.Set.copyOf(LoraConfig.ALL_TARGETS)), 5, Device.cpu())) {
            Trainer<LoraTrainee> t = new Trainer<>(new LoraTrainee(LossPass.inMemory(lm, LossTerm.CAUSAL_LM), lora, OPTIONS),
                    TrainingMethod.none(), data, OPTIONS, dir, Trainer.Listener.NONE);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, t::run);
            assertTrue(e.getMessage().contains("other options"), e.getMessage());
        }
    }

    private static void same(Map<String, float[]> a, Map<String, float[]> b) {
        assertEquals(a.keySet(), b.keySet());
        a.forEach((k, v) -> assertArrayEquals(v, b.get(k), k)); // exact float equality
    }
}
