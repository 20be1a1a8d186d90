package dev.lopper.training.job;

import dev.lopper.training.job.ScheduleMethods;

import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.loop.TrainOptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** EfficientLLM and BiP through the schedule engine's entry point: files, plan, resume, refusals. */
public class FullTrainingScheduleTest {
    @TempDir
    static Path shared;
    static Path model;
    static Path text;
    static final TrainOptions TRAIN = TrainOptions.defaults(3).withMicroBatch(2).withAccumulation(1).withSeqLen(16)
            .withLearningRate(1e-3).withEvalEvery(3).withCheckpointEvery(1).withSeed(3);

    @BeforeAll
    static void setUp() throws Exception {
        model = shared.resolve("model");
        RandomModels.write(model, RandomModels.llama());
        text = shared.resolve("text.txt");
        Files.writeString(text, Files.readString(Fixtures.text("train")).substring(0, 20_000));
    }

    @Test
    void bothMethodsRunThroughTheEngineAndResume() throws Exception {
        assertTrue(ScheduleMethods.isMethod("efficientllm") && ScheduleMethods.isMethod("bip"));
        for (String method : new String[] {"efficientllm", "bip"}) {
            Path out = shared.resolve(method);
            ScheduleRequest r = new ScheduleRequest(PruneRequest.builder(model).criterion(method).ratio(0.5).out(out).build(), null, 0, 3,
                    text, null, LoraConfig.defaults(), TRAIN, 2);
            PruneSchedule.Result first = new PruneSchedule().run(r);
            assertEquals(method, first.plan().criterion());
            assertTrue(Files.isRegularFile(out.resolve("curve.csv")) && Files.isRegularFile(out.resolve("curve.png")));
            assertEquals(3, first.curve().get(first.curve().size() - 1).step());
            try (ModelDir d = ModelDir.open(out); ModelDir o = ModelDir.open(model)) {
                assertEquals(d.config().layers(), Surgery.apply(o.config(), o.checkpoint(), PruningPlan.load(out.resolve(Surgery.PLAN_FILE)))
                        .config().layers());
            }
            assertEquals(0.5, first.curve().get(first.curve().size() - 1).metrics().get("ratio"), 0.06);
            PruneSchedule.Result again = new PruneSchedule().run(r);
            assertEquals(3, again.resumedAfter());
        }
        ScheduleRequest noData = new ScheduleRequest(PruneRequest.builder(model).criterion("bip").ratio(0.5).out(shared.resolve("x")).build(),
                null, 0, 3, null, null, LoraConfig.defaults(), TRAIN, 2);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new PruneSchedule().run(noData));
        assertTrue(e.getMessage().contains("--train-data"), e.getMessage());
    }
}
