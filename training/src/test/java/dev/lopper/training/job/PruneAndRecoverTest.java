package dev.lopper.training.job;

import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.lora.LoraConfig;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.ModelDir;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.Pruner;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Prune + recover in one job equals {@link Pruner} then {@link Recovery} run separately, bit for bit; a killed or
 * interrupted job resumes to the same model; bad combinations fail before any work.
 */
public class PruneAndRecoverTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path text;

    private static final TrainOptions OPTIONS = TrainOptions.defaults(4).withBatch(2, 1, 32)
            .withLearningRate(1e-2).withEvery(2, 2).withSeed(3);

    @BeforeAll
    static void setUp() throws Exception {
        model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama().withHeads(4, 2).withLayers(3));
        text = tmp.resolve("train.txt");
        RandomModels.writeTrainingText(text, 300);
    }

    /** Magnitude, global allocation (per-layer shapes differ), writing to {@code out}. */
    private static PruneRequest prune(Path m, Path out) {
        return PruneRequest.builder(m).criterion("magnitude").ratio(0.4).allocation("global").out(out).build();
    }

    private static PruneAndRecover.Request chained(PruneRequest p, Path data) {
        return new PruneAndRecover.Request(p, new Recovery.Settings(data, null, LoraConfig.defaults(), OPTIONS, 0.1, 4, DataType.FLOAT32, false, null, false));
    }

    /** What {@code lopper prune} then {@code lopper recover} give: the merged model's directory. */
    private static Path separately(PruneRequest p, Path data, TrainOptions o) throws Exception {
        new Pruner().run(p);
        Path rec = p.out().resolveSibling(p.out().getFileName() + "-rec");
        Recovery.run(new Recovery.Request(p.out(), rec, ai.djl.Device.cpu(), false, new Recovery.Settings(data, null,
                LoraConfig.defaults(), o, 0.1, 4, DataType.FLOAT32, false, null, false)), Trainer.Listener.NONE, t -> { });
        return rec;
    }

    private static Map<String, float[]> tensors(Path dir) throws Exception {
        Map<String, float[]> out = new TreeMap<>();
        try (ModelDir d = ModelDir.open(dir); NDManager m = NDManager.newBaseManager(ai.djl.Device.cpu())) {
            for (String n : d.checkpoint().names()) {
                out.put(n, d.checkpoint().load(n, m).toFloatArray());
            }
        }
        return out;
    }

    private static void same(Map<String, float[]> a, Map<String, float[]> b) {
        assertEquals(a.keySet(), b.keySet());
        a.forEach((k, v) -> assertArrayEquals(v, b.get(k), k)); // exact float equality
    }

    @Test
    void chainedEqualsSeparateAndResumes() throws Exception {
        Map<String, float[]> expected = tensors(separately(prune(model, tmp.resolve("sep")), text, OPTIONS));

        Path out = tmp.resolve("chained");
        Path plan = tmp.resolve("chained-plan.json");
        PruneRequest withPlan = PruneRequest.builder(model).criterion("magnitude").ratio(0.4).allocation("global").out(out).planOut(plan).build();
        PruneAndRecover.Outcome o = PruneAndRecover.run(chained(withPlan, text), Trainer.Listener.NONE, t -> { });
        assertNotNull(o.prune());
        assertEquals(out, o.out());
        same(expected, tensors(out));
        // OUT is a plain model directory (Lopper's marker, no recovery files); the rest lies beside it
        assertTrue(OutputGuard.isLopperOutput(out));
        assertFalse(Files.exists(out.resolve("adapter")) || Files.exists(out.resolve("checkpoints")));
        Path work = tmp.resolve("chained" + JobDir.SUFFIX);
        assertTrue(Files.isRegularFile(work.resolve("adapter/adapter_model.safetensors")));
        assertTrue(Files.isRegularFile(work.resolve("curve.csv")) && Files.isRegularFile(out.resolve("curve.csv")));
        assertArrayEquals(Files.readAllBytes(tmp.resolve("sep").resolve(dev.lopper.pruning.surgery.Surgery.PLAN_FILE)), Files.readAllBytes(plan));
        try (ModelDir pruned = ModelDir.open(work.resolve("pruned")); ModelDir rec = ModelDir.open(out)) {
            assertEquals(pruned.config().layers(), rec.config().layers());
            assertFalse(rec.config().isUniform());
        }

        // a kill during training (step 3): the rerun reuses the pruned model, resumes from step 2, ends the same
        Path killed = tmp.resolve("killed");
        Trainer.Listener kill = new Trainer.Listener() {
            @Override
            public void step(Trainer.Point p, int total, double tps, double eta) {
                if (p.step() == 3) {
                    throw new IllegalStateException("killed");
                }
            }
        };
        assertThrows(IllegalStateException.class, () -> PruneAndRecover.run(chained(prune(model, killed), text), kill, t -> { }));
        assertFalse(Files.exists(killed));
        PruneAndRecover.Outcome again = PruneAndRecover.run(chained(prune(model, killed), text), Trainer.Listener.NONE, t -> { });
        assertNull(again.prune(), "the finished pruning step is reused");
        assertEquals(2, again.recovery().train().resumedFrom());
        same(expected, tensors(killed));

        // Ctrl-C after step 1: a checkpoint, no OUT; the rerun ends the same
        Path stopped = tmp.resolve("stopped");
        Trainer<?>[] running = new Trainer<?>[1];
        Trainer.Listener stopAt1 = new Trainer.Listener() {
            @Override
            public void step(Trainer.Point p, int total, double tps, double eta) {
                if (p.step() == 1) {
                    running[0].requestStop();
                }
            }
        };
        Consumer<Trainer<?>> keep = t -> running[0] = t;
        PruneAndRecover.Outcome interrupted = PruneAndRecover.run(chained(prune(model, stopped), text), stopAt1, keep);
        assertTrue(interrupted.recovery().train().interrupted());
        assertNull(interrupted.out());
        assertFalse(Files.exists(stopped));
        PruneAndRecover.Outcome resumed = PruneAndRecover.run(chained(prune(model, stopped), text), Trainer.Listener.NONE, t -> { });
        assertEquals(1, resumed.recovery().train().resumedFrom());
        same(expected, tensors(stopped));

        // the finished job again: the one resume rule of every job (JobDir): the same command continues from the last
        // checkpoint, which is the end, and writes the same OUT again
        PruneAndRecover.Outcome rerun = PruneAndRecover.run(chained(prune(model, out), text), Trainer.Listener.NONE, t -> { });
        assertNull(rerun.prune(), "the pruned model is reused");
        assertEquals(OPTIONS.steps(), rerun.recovery().train().resumedFrom());
        same(expected, tensors(out));
    }

    @Test
    void badCombinationsFailBeforeAnyWork() throws Exception {
        // no --out (a plan only)
        PruneRequest planOnly = PruneRequest.builder(model).ratio(0.4).planOut(tmp.resolve("plan.json")).build();
        oneLine(assertThrows(IllegalArgumentException.class, () -> PruneAndRecover.check(chained(planOnly, text))), "--out");
        // magnitude has no --calib to fall back to
        Path out = tmp.resolve("bad");
        oneLine(assertThrows(IllegalArgumentException.class, () -> PruneAndRecover.check(chained(prune(model, out), null))), "--train-data");
        oneLine(assertThrows(IllegalArgumentException.class,
                () -> PruneAndRecover.check(chained(prune(model, out), tmp.resolve("absent.txt")))), "absent.txt");
        // a user's folder where the recovery directory goes: refused, untouched
        Path users = tmp.resolve("bad" + JobDir.SUFFIX);
        Files.createDirectories(users);
        Files.writeString(users.resolve("notes.txt"), "mine");
        oneLine(assertThrows(IllegalArgumentException.class,
                () -> PruneAndRecover.run(chained(prune(model, out), text), Trainer.Listener.NONE, t -> { })), "Lopper did not write");
        assertEquals("mine", Files.readString(users.resolve("notes.txt")));
        assertFalse(Files.exists(out));

        // a finished job, then the same OUT with other settings: refused without --overwrite; with it, started over
        Path other = tmp.resolve("other");
        PruneAndRecover.run(chained(prune(model, other), text), Trainer.Listener.NONE, t -> { });
        PruneRequest otherRatio = PruneRequest.builder(model).ratio(0.2).allocation("global").out(other).build();
        oneLine(assertThrows(IllegalArgumentException.class, () -> PruneAndRecover.check(chained(otherRatio, text))), "--overwrite");
        PruneRequest overwrite = PruneRequest.builder(model).ratio(0.2).allocation("global").out(other).overwrite(true).build();
        PruneAndRecover.Outcome o = PruneAndRecover.run(chained(overwrite, text), Trainer.Listener.NONE, t -> { });
        assertNotNull(o.prune(), "other settings: pruned again");
        assertEquals(0, o.recovery().train().resumedFrom());
    }

    private static void oneLine(IllegalArgumentException e, String mentions) {
        assertTrue(e.getMessage().contains(mentions) && !e.getMessage().contains("\n"), e.getMessage());
    }

    @Test // 3 s on the idle 2-core machine (wanda-sp 4 x 64 calibration, 2 training steps)
    void fixtureChainedEqualsSeparate() throws Exception {
        Path fixture = Fixtures.root().resolve("fixtures/lopper-tiny");
        Assumptions.assumeTrue(Files.exists(fixture.resolve("model.safetensors")), "fixtures/lopper-tiny not trained yet");
        Path calib = Fixtures.text("valid");
        TrainOptions o = TrainOptions.defaults(2).withBatch(1, 1, 32).withLearningRate(1e-2)
                .withEvery(1, 1).withSeed(3);
        // wanda-sp with a few calibration windows; training falls back to the calibration text
        java.util.function.Function<Path, PruneRequest> p = dir -> PruneRequest.builder(fixture).criterion("wanda-sp").ratio(0.5)
                .calibration(calib).samples(4).seqLen(64).out(dir).build();
        Map<String, float[]> expected = tensors(separately(p.apply(tmp.resolve("fx-sep")), calib, o));
        Path out = tmp.resolve("fx-chained");
        PruneAndRecover.run(new PruneAndRecover.Request(p.apply(out), new Recovery.Settings(null, null, LoraConfig.defaults(), o, 0.1, 4, DataType.FLOAT32, false, null, false)),
                Trainer.Listener.NONE, t -> { });
        same(expected, tensors(out));
    }
}
