package dev.lopper.training.job;

import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.allocation.KeptUnits;
import dev.lopper.model.ModelDir;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.PruneResult;
import dev.lopper.pruning.Pruner;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.loop.TrainOptions;
import ai.djl.ndarray.NDManager;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The schedule engine on a tiny random model: iterative magnitude equals one-shot exactly; every step of iterative
 * LLM-Pruner equals an independent one-shot run on the intermediate model written to disk; a run killed in training
 * or in a prune step and run again equals an uninterrupted run, bit for bit.
 */
public class PruneScheduleTest {
    @TempDir
    static Path shared;
    static Path model;
    static Path TEXT;
    static final TrainOptions TRAIN = TrainOptions.defaults(4).withBatch(1, 1, 16)
            .withLearningRate(1e-2).withSeed(3);

    @BeforeAll
    static void setUp() throws Exception {
        model = shared.resolve("model");
        RandomModels.write(model, RandomModels.llama().withLayers(6));
        // 24 KB of the fixture's training text: enough windows, and quick to tokenize on a busy machine
        TEXT = shared.resolve("text.txt");
        Files.writeString(TEXT, Files.readString(Fixtures.text("train")).substring(0, 24_000));
    }

    private static ScheduleRequest request(PruneRequest.Builder b, Integer iterations, int trainSteps, Path out) {
        return new ScheduleRequest(b.out(out).build(), iterations, trainSteps, null, TEXT, null, LoraConfig.defaults(), TRAIN, 2, 0.05, null);
    }

    @Test
    void iterativeMagnitudeEqualsOneShotExactly() throws Exception {
        Path out = shared.resolve("mag-iter");
        PruneSchedule.Result r = new PruneSchedule().run(request(PruneRequest.builder(model).criterion("magnitude").ratio(0.5), 3, 0, out));
        PruneResult one = new Pruner().run(PruneRequest.builder(model).criterion("magnitude").ratio(0.5)
                .out(shared.resolve("mag-one")).build());
        assertEquals(one.plan().layers(), r.plan().layers());
        assertEquals(one.plan().layers(), PruningPlan.load(out.resolve(Surgery.PLAN_FILE)).layers());
        assertSameTensors(shared.resolve("mag-one"), out);
        assertTrue(Files.isRegularFile(out.resolve("curve.csv")) && Files.isRegularFile(out.resolve("curve.png")));
        // the steps really were three: 1/3, 2/3 and all of 48 channels per layer (int(r x 96): 16, 32, 48)
        try (ModelDir o = ModelDir.open(model)) {
            assertEquals(96 - 16, stepPlan(out, 1).resolve(o.config()).get(0).keptChannels().length);
            assertEquals(96 - 32, stepPlan(out, 2).resolve(o.config()).get(0).keptChannels().length);
        }
        // steps live in memory: only the newest step's model is on disk, as its checkpoint
        assertFalse(Files.exists(JobDir.dirOf(out).resolve("steps/0001/model")));
        assertTrue(Files.isRegularFile(JobDir.dirOf(out).resolve("steps/0003/model/config.json")));
    }

    @Test
    void iterativeLlmPrunerStepsEqualIndependentOneShotsOnTheIntermediateModels() throws Exception {
        PruneRequest.Builder b = PruneRequest.builder(model).criterion("llm-pruner").ratio(0.5).calibration(TEXT)
                .samples(4).seqLen(16).seed(1);
        // --iterative-steps 1 is today's one-shot, plan for plan
        PruneSchedule.Result once = new PruneSchedule().run(request(b, 1, 0, shared.resolve("llm-1")));
        PruneResult oneShot = new Pruner().run(PruneRequest.builder(model).criterion("llm-pruner").ratio(0.5).calibration(TEXT)
                .samples(4).seqLen(16).seed(1).planOut(shared.resolve("llm-oneshot.json")).build());
        assertEquals(oneShot.plan().layers(), once.plan().layers());

        Path out = shared.resolve("llm-2");
        new PruneSchedule().run(request(b, 2, 0, out));
        // step 1 prunes 0.25: 96 - int(96 x 0.75) = 24 channels and 0 KV groups per prunable layer (1..5: MetaPruner's count)
        PruningPlan step1 = stepPlan(out, 1);
        PruneResult ind1 = new Pruner().run(PruneRequest.builder(model).criterion("llm-pruner").ratio(0.25).calibration(TEXT)
                .samples(4).seqLen(16).seed(1).planOut(shared.resolve("ind1.json")).build());
        assertEquals(ind1.plan().layers(), step1.layers());
        // step 2 re-scores the 72-channel model and removes 24 more channels and 1 of its 2 KV groups: the same as an
        // independent one-shot on that model asked for exactly those counts (2 - int(2 x 0.5) = 1, 72 - int(72 x 2/3) = 24)
        // the intermediate model, written here for the independent run (the schedule holds it in memory only): no
        // training between the steps, so it is the original cut by step 1's plan
        Path mid = shared.resolve("llm-mid");
        try (ModelDir o = ModelDir.open(model)) {
            Surgery.save(Surgery.apply(o.config(), o.checkpoint(), step1), mid, model, step1);
        }
        PruningPlan step2;
        try (ModelDir o = ModelDir.open(model); ModelDir m = ModelDir.open(mid)) {
            List<LayerSelection> relative = KeptUnits.of(o.config(), step1.resolve(o.config())).toCurrent(stepPlan(out, 2).resolve(o.config()));
            step2 = Allocation.toPlan(m.config(), relative, PruningPlan.empty());
        }
        // (step 2 draws new calibration windows: seed 1 + 1, as hf_prune.py draws new examples each step)
        PruneResult ind2 = new Pruner().run(PruneRequest.builder(mid).criterion("llm-pruner").ratio(0.5).headRatio(0.5)
                .channelRatio(24.0 / 72).calibration(TEXT).samples(4).seqLen(16).seed(2)
                .planOut(shared.resolve("ind2.json")).build());
        assertEquals(ind2.plan().layers(), step2.layers());
        assertTrue(step2.layers().size() == 5, "layers 1..5 are pruned (the README's 4..30 of 32 scaled to 6 layers: keep first 1, last 0): "
                + step2.layers());
    }

    @Test
    void aRatioShortOfTheAskedOneIsSaidInOneLine() throws Exception {
        // the last of 6 layers kept whole: 0.5 of the pruned layers' prunable parameters (1 of 2 KV groups, 48 of 96
        // channels), 5/6 of that over the model
        Path out = shared.resolve("short");
        PruneSchedule.Result r = new PruneSchedule().run(request(PruneRequest.builder(model).criterion("magnitude").ratio(0.5).keepLast(1),
                2, 0, out));
        PruningPlan.Result res = r.plan().result();
        assertEquals(0.5, res.requestedRatio());
        assertEquals(0.5, res.achievedRatio(), 1e-12);
        assertTrue(res.shortfall() != null && res.shortfall().contains("of the whole model's") && res.shortfall().contains("[5]")
                && !res.shortfall().contains("\n"), res.shortfall());
        assertEquals(res.shortfall(), PruningPlan.load(out.resolve(Surgery.PLAN_FILE)).result().shortfall(), "the plan carries it");
    }

    @Test
    void killedRunsResumeToTheUninterruptedResult() throws Exception {
        PruneRequest.Builder b = PruneRequest.builder(model).criterion("magnitude").ratio(0.4);
        Path straight = shared.resolve("straight");
        new PruneSchedule().run(request(b, 3, 4, straight));

        // killed in the middle of step 1's training (after its 3rd step; its checkpoint of step 2 survives)
        Path killed = shared.resolve("killed");
        assertThrows(IllegalStateException.class, () -> new PruneSchedule().run(request(b.progress(kill(m -> m.contains("train 3/4"), null)), 3, 4, killed)));
        // killed again while step 3 scores (steps 1 and 2 are done)
        assertThrows(IllegalStateException.class, () -> new PruneSchedule().run(request(b.progress(kill(null, s -> s.startsWith("step 3/3"))), 3, 4, killed)));
        assertTrue(Files.isRegularFile(JobDir.dirOf(killed).resolve("steps/0002/done.json")));
        PruneSchedule.Result r = new PruneSchedule().run(request(b.progress(Progress.NONE), 3, 4, killed));
        assertEquals(2, r.resumedAfter());
        assertSameTensors(straight, killed);
        assertEquals(Files.readString(straight.resolve("curve.csv")), Files.readString(killed.resolve("curve.csv")));

        // a rerun with other settings is refused, naming the work directory
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new PruneSchedule().run(request(PruneRequest.builder(model).criterion("magnitude").ratio(0.3), 3, 4, killed.resolveSibling("killed"))));
        assertTrue(e.getMessage().contains("ratio 0.4 (now 0.3)") && e.getMessage().contains("--overwrite"), e.getMessage());
    }

    /** The composed plan (original indices) after step {@code k}, from that step's done.json. */
    private static PruningPlan stepPlan(Path out, int k) throws Exception {
        Path done = JobDir.dirOf(out).resolve(String.format("steps/%04d/done.json", k));
        return PruningPlan.parse(new com.fasterxml.jackson.databind.ObjectMapper().readTree(done.toFile()).get("plan"), done);
    }

    private static Progress kill(java.util.function.Predicate<String> onMessage, java.util.function.Predicate<String> onStage) {
        return new Progress() {
            @Override
            public void message(String line) {
                if (onMessage != null && onMessage.test(line)) {
                    throw new IllegalStateException("killed");
                }
            }

            @Override
            public void stage(String name) {
                if (onStage != null && onStage.test(name)) {
                    throw new IllegalStateException("killed");
                }
            }
        };
    }

    public static void assertSameTensors(Path a, Path b) throws Exception {
        try (ModelDir x = ModelDir.open(a); ModelDir y = ModelDir.open(b); NDManager m = NDManager.newBaseManager()) {
            TensorSource s = x.checkpoint();
            TensorSource t = y.checkpoint();
            assertEquals(new java.util.TreeSet<>(s.names()), new java.util.TreeSet<>(t.names()));
            for (String n : s.names()) {
                assertArrayEquals(s.load(n, m).toFloatArray(), t.load(n, m).toFloatArray(), n);
            }
            assertEquals(x.config().layers(), y.config().layers());
        }
    }
}
