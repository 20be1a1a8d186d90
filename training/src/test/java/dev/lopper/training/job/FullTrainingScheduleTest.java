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
import dev.lopper.training.loop.Trainer;
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
    static final TrainOptions TRAIN = TrainOptions.defaults(3).withBatch(2, 1, 16)
            .withLearningRate(1e-3).withEvery(3, 1).withSeed(3);

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
                    text, null, LoraConfig.defaults(), TRAIN, 2, 0.05, null);
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
                null, 0, 3, null, null, LoraConfig.defaults(), TRAIN, 2, 0.05, null);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new PruneSchedule().run(noData));
        assertTrue(e.getMessage().contains("--train-data"), e.getMessage());
    }

    /** Ctrl-C checkpoints every method: a stop after step 1 ends in TrainingInterrupted, and the rerun equals a straight run. */
    @Test
    void aStopCheckpointsAndTheRerunEqualsAStraightRun() throws Exception {
        for (String method : new String[] {"efficientllm", "bip"}) {
            Path straight = shared.resolve(method + "-straight");
            new PruneSchedule().run(request(method, straight, dev.lopper.model.util.Progress.NONE));
            Path stopped = shared.resolve(method + "-stopped");
            Trainer<?>[] running = new Trainer<?>[1];
            dev.lopper.model.util.Progress stopAfterStep1 = new dev.lopper.model.util.Progress() {
                @Override
                public void message(String line) {
                    if (line.startsWith("train 1/")) {
                        running[0].requestStop(); // as StopOnSignal does on SIGINT
                    }
                }
            };
            TrainingInterrupted e = assertThrows(TrainingInterrupted.class,
                    () -> new PruneSchedule().run(request(method, stopped, stopAfterStep1), t -> running[0] = t));
            assertEquals(1, e.step());
            assertTrue(Files.isDirectory(JobDir.dirOf(stopped).resolve("checkpoints/step-000001")), method);
            assertTrue(!Files.exists(stopped), "no model before the job finishes");
            PruneSchedule.Result r = new PruneSchedule().run(request(method, stopped, dev.lopper.model.util.Progress.NONE));
            assertEquals(1, r.resumedAfter(), method);
            PruneScheduleTest.assertSameTensors(straight, stopped);
        }
    }

    private static ScheduleRequest request(String method, Path out, dev.lopper.model.util.Progress progress) {
        return new ScheduleRequest(PruneRequest.builder(model).criterion(method).ratio(0.5).progress(progress).out(out).build(), null, 0, 3,
                text, null, LoraConfig.defaults(), TRAIN, 2, 0.05, null);
    }
}
