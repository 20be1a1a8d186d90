package dev.lopper.training.job;

import dev.lopper.pruning.PruneRequest;

import dev.lopper.training.loop.CausalLm;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.loop.TrainingMethod;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.TrainingData;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The whole run: a plain pruned model any command reads (its loss = the run's last validation), its plan, resume. */
public class PruneWhileTrainingTest {
    @TempDir
    static Path shared;
    static Path model;
    static Path TEXT;

    @BeforeAll
    static void setUp() throws Exception {
        model = shared.resolve("model");
        RandomModels.write(model, RandomModels.llama());
        // the fixture's first 20,000 characters (tokenizing all of it three times would dominate the test)
        TEXT = shared.resolve("train.txt");
        Files.writeString(TEXT, Files.readString(Path.of("../fixtures/text/kjv-train.txt")).substring(0, 20000));
    }

    private static ScheduleRequest request(String method, double ratio, Path out, TrainOptions o) {
        return new ScheduleRequest(PruneRequest.builder(model).criterion(method).ratio(ratio).out(out).build(), null, 0, o.steps(), TEXT,
                null, dev.lopper.training.lora.LoraConfig.defaults(), o, 4, 0.05, null);
    }

    @ParameterizedTest
    @CsvSource({"efficientllm, 0.3", "bip, 0.5"})
    void writesAPlainPrunedModelWithItsPlanAndResumes(String method, double ratio) throws Exception {
        TrainOptions o = TrainOptions.defaults(3).withBatch(2, 1, 16).withLearningRate(1e-3)
                .withWarmup(0).withEvery(3, 1).withSeed(1);
        Path out = shared.resolve(method);
        ScheduleRequest r = request(method, ratio, out, o);
        PruneSchedule.Result first = new PruneSchedule().run(r);
        long before;
        try (ModelDir d = ModelDir.open(model)) {
            before = dev.lopper.model.ModelStats.parameters(d.config());
        }
        long after = first.curve().get(first.curve().size() - 1).params();
        assertTrue(after < before);
        assertTrue(Files.isRegularFile(out.resolve("curve.png")) && Files.isRegularFile(JobDir.dirOf(out).resolve("curve.csv")));
        double lastVal = first.curve().get(first.curve().size() - 1).valLoss();

        TrainingData data;
        try (ModelDir d = ModelDir.open(model)) {
            data = TrainingData.load(TEXT, null, d.tokenizer(), 1, 4, 16, 0.05, 1);
        }
        try (ModelDir p = ModelDir.open(out); LlamaModel lm = p.loadModel(Device.cpu()); NDManager m = NDManager.newBaseManager()) {
            assertEquals(after, lm.parameterCount());
            double sum = 0;
            for (long[] w : data.validation()) {
                var ids = m.create(w, new ai.djl.ndarray.types.Shape(1, w.length));
                sum += CausalLm.loss(lm.logits(ids), ids).getFloat();
            }
            assertEquals(lastVal, sum / data.validation().length, 1e-4, "the saved model is the trained one");
            PruningPlan plan = PruningPlan.load(out.resolve(Surgery.PLAN_FILE));
            assertEquals(method, plan.criterion());
            try (ModelDir d = ModelDir.open(model)) {
                assertEquals(p.config().layers(), Surgery.apply(d.config(), d.checkpoint(), plan).config().layers());
            }
        }
        // the same command again continues from the last checkpoint (the run is complete: it rewrites the outputs)
        PruneSchedule.Result again = new PruneSchedule().run(r);
        assertEquals(3, again.resumedAfter());
        assertEquals(after, again.curve().get(again.curve().size() - 1).params());
        // another ratio into the same OUT is refused with one line naming OUT and what differs
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new PruneSchedule().run(request(method, 0.1, out, o)));
        assertTrue(e.getMessage().contains("ratio " + ratio + " (now 0.1)"), e.getMessage());
        assertTrue(e.getMessage().startsWith("--out " + out), e.getMessage());
    }
}
