package dev.lopper.training.method;

import dev.lopper.training.job.JobDir;

import dev.lopper.training.job.PruneSchedule;
import dev.lopper.training.job.ScheduleRequest;

import ai.djl.Device;
import dev.lopper.calibration.CalibrationData;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelStats;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.PruneResult;
import dev.lopper.pruning.Pruner;
import dev.lopper.pruning.allocation.LayerImportance;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.loop.TrainOptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Adapt-Accel on the schedule engine: the steps, step 1 equal to a one-shot adapt-pruner prune, step 2's per-layer
 * counts equal to the official per-step update worked out here from the layer importance of the intermediate model,
 * training after every step and a plain model at the end.
 */
public class AdaptPrunerMethodTest {
    @TempDir
    static Path shared;
    static Path model;
    static Path text;
    static final TrainOptions TRAIN = TrainOptions.defaults(2).withBatch(1, 1, 16)
            .withLearningRate(1e-2).withSeed(3);

    @BeforeAll
    static void setUp() throws Exception {
        model = shared.resolve("model");
        RandomModels.write(model, RandomModels.llama().withLayers(4)); // 2 KV groups of head_dim 16, 96 channels
        text = shared.resolve("text.txt");
        Files.writeString(text, Files.readString(Fixtures.text("train")).substring(0, 24_000));
    }

    private static PruneRequest.Builder magnitude(double ratio, String stepRatio) {
        return PruneRequest.builder(model).criterion(AdaptPrunerMethod.NAME).option("criterion", "magnitude")
                .option("step-ratio", stepRatio).ratio(ratio).calibration(text).samples(4).seqLen(16).seed(1);
    }

    private static ScheduleRequest request(PruneRequest.Builder b, int trainSteps, Path out) {
        return new ScheduleRequest(b.out(out).build(), null, trainSteps, null, text, null, LoraConfig.defaults(), TRAIN, 2, 0.05, null);
    }

    @Test
    void stepsOfStepRatioUpToTheTargetAndThePapersDefaults() {
        AdaptPrunerMethod m = new AdaptPrunerMethod(new ScheduleRequest(PruneRequest.builder(model).criterion("adapt-pruner")
                .ratio(0.2).out(shared.resolve("x")).build(), null, 3, null, text, null, LoraConfig.defaults(), TRAIN, 2, 0.05, null));
        assertEquals(List.of(new Phase(0.05, 3), new Phase(0.1, 3), new Phase(0.15000000000000002, 3), new Phase(0.2, 3)), m.phases());
        assertTrue(m.settings().get("criterion").startsWith("llm-pruner (paper) {taylor=param_first}"), m.settings().toString());
        assertTrue(m.settings().get("step_ratio").startsWith("0.05 (paper)"));
        AdaptPrunerMethod odd = new AdaptPrunerMethod(request(magnitude(0.12, "0.05"), 0, shared.resolve("y")));
        assertEquals(List.of(new Phase(0.05, 0), new Phase(0.1, 0), new Phase(0.12, 0)), odd.phases());
        assertThrows(IllegalArgumentException.class, () -> new AdaptPrunerMethod(request(magnitude(0.2, "0"), 0, shared.resolve("z"))));
        // --steps 10 over 4 prune steps: 3, 3, 2, 2
        AdaptPrunerMethod budget = new AdaptPrunerMethod(new ScheduleRequest(magnitude(0.2, "0.05").out(shared.resolve("w")).build(), null, 0, 10,
                text, null, LoraConfig.defaults(), TRAIN, 2, 0.05, null));
        assertEquals(List.of(3, 3, 2, 2), budget.phases().stream().map(Phase::trainSteps).toList());
    }

    @Test
    void eachStepRemeasuresImportanceAndMovesEveryLayerFromWhereItIs() throws Exception {
        Path out = shared.resolve("two");
        PruneSchedule.Result r = new PruneSchedule().run(request(magnitude(0.5, "0.25"), 0, out));
        // step 1 on the dense model is the one-shot adapt-pruner allocation at 0.25, every layer pruned
        Path done = JobDir.dirOf(out).resolve("steps/0001/done.json");
        PruningPlan step1 = PruningPlan.parse(new com.fasterxml.jackson.databind.ObjectMapper().readTree(done.toFile()).get("plan"), done);
        PruneResult one = new Pruner().run(PruneRequest.builder(model).criterion("magnitude").allocation("adapt-pruner").ratio(0.25)
                .keepFirst(0).keepLast(0).calibration(text).samples(4).seqLen(16).seed(1).planOut(shared.resolve("one.json")).build());
        assertEquals(one.plan().layers(), step1.layers());

        // step 2: importance of the intermediate model; s_l = s'_l + (0.5 - mean s') - 0.02 (I_l - mean I) / max |I - mean I|
        // the intermediate model (in memory in the schedule; no training between the steps): the original cut by step 1
        Path mid = shared.resolve("two-mid");
        try (ModelDir o = ModelDir.open(model)) {
            Surgery.save(Surgery.apply(o.config(), o.checkpoint(), step1), mid, model, step1);
        }
        double[] imp;
        int[] before = new int[4];
        try (ModelDir md = ModelDir.open(mid)) {
            long[][] w = CalibrationData.load(text, md.tokenizer(), 4, 16, 1, null, null).windows();
            imp = LayerImportance.measure(md.config(), md.checkpoint(), Device.cpu(), w, 512, Progress.NONE);
            for (int l = 0; l < 4; l++) {
                before[l] = 96 - md.config().layer(l).intermediateSize();
            }
        }
        double meanI = (imp[0] + imp[1] + imp[2] + imp[3]) / 4;
        double maxDev = 0;
        for (double v : imp) {
            maxDev = Math.max(maxDev, Math.abs(v - meanI));
        }
        double meanBefore = (before[0] + before[1] + before[2] + before[3]) / 4.0 / 96;
        List<LayerSelection> fin = r.plan().resolve(RandomModelsConfig.of(model));
        int distinct = 0;
        for (int l = 0; l < 4; l++) {
            double s = before[l] / 96.0 + (0.5 - meanBefore) - 0.02 * (imp[l] - meanI) / maxDev;
            int removed = Math.max(96 - (int) (96 * (1 - s)), before[l]);
            assertEquals(96 - removed, fin.get(l).keptChannels().length, "layer " + l + " (s = " + s + ")");
            distinct += fin.get(l).keptChannels().length != fin.get(0).keptChannels().length ? 1 : 0;
        }
        assertTrue(distinct > 0, "layers are pruned differently: " + r.plan().layers());
        try (ModelDir md = ModelDir.open(out)) {
            assertEquals(r.plan().result().paramsAfter(), ModelStats.parameters(md.config()), "a plain pruned model");
        }
    }

    /** Slow (LoRA training after every step; 2 minutes under a load of 30): {@code mvn -Pslow}. */
    @Test
    @Tag("slow")
    void trainsAfterEveryStepAndWritesAPlainModel() throws Exception {
        Path out = shared.resolve("trained");
        PruneSchedule.Result r = new PruneSchedule().run(request(magnitude(0.3, "0.15"), 2, out));
        Path work = JobDir.dirOf(out);
        for (String step : new String[] {"0001", "0002"}) {
            assertTrue(Files.isDirectory(work.resolve("steps/" + step + "/checkpoints")), "step " + step + " trained");
        }
        for (int k = 1; k <= 2; k++) {
            int step = k;
            assertTrue(r.curve().stream().anyMatch(x -> x.step() == step && x.trainLoss() != null), "step " + k + " trained: " + r.curve());
        }
        assertTrue(Files.isRegularFile(out.resolve("curve.csv")) && Files.isRegularFile(out.resolve("curve.png")));
        try (ModelDir md = ModelDir.open(out); dev.lopper.model.LlamaModel m = md.loadModel(Device.cpu())) {
            assertEquals(r.plan().result().paramsAfter(), ModelStats.parameters(md.config()));
            assertTrue(Float.isFinite(m.logits(new long[] {1, 5, 9})[2][3]));
        }
    }

    /** The original model's config. */
    private static final class RandomModelsConfig {
        static dev.lopper.model.config.ModelConfig of(Path dir) throws Exception {
            try (ModelDir md = ModelDir.open(dir)) {
                return md.config();
            }
        }
    }
}
