package dev.lopper.pruning;

import ai.djl.ndarray.NDManager;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelStats;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.plan.PruningPlan;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A whole pruning job through the library API, no CLI. */
class PrunerTest {
    @TempDir
    Path tmp;

    private Path model() throws Exception {
        Path dir = tmp.resolve("model");
        RandomModels.write(dir, RandomModels.llama().withHeads(8, 4).withLayers(3));
        return dir;
    }

    private Path text() throws Exception {
        return Files.writeString(tmp.resolve("calib.txt"),
                "In the beginning God created the heaven and the earth. And the earth was without form, and void.\n".repeat(30));
    }

    @Test
    void magnitudeWritesModelAndPlan() throws Exception {
        Path out = tmp.resolve("out");
        List<String> stages = new ArrayList<>();
        PruneResult r = new Pruner().run(PruneRequest.builder(model()).criterion("magnitude").ratio(0.25)
                .out(out).planOut(tmp.resolve("plan.json")).progress(new Progress() {
                    @Override
                    public void stage(String name) {
                        stages.add(name);
                    }
                }).build());
        assertEquals(List.of("scoring", "allocation", "surgery", "save"), stages);
        try (ModelDir md = ModelDir.open(out)) {
            assertEquals(r.plan().result().paramsAfter(), ModelStats.parameters(md.config()));
        }
        assertEquals(r.plan(), PruningPlan.load(tmp.resolve("plan.json")).withModelHash(r.plan().modelHash()));
        assertEquals("uniform", r.settings().get("allocation").value());
        assertEquals("paper", r.settings().get("allocation").from());
        assertTrue(r.stats().seconds() > 0);
        assertEquals(0, r.stats().calibrationTokens());
    }

    /**
     * Magnitude at 0.2 on 4 KV groups of 16 x 64 and 96 channels: int(0.2 x 4) = 0 groups and int(19.2) = 19 channels
     * per layer, i.e. 19 x 3 x 64 = 3648 of the layer's 2 x 64 x 128 + 2 x 64 x 64 + 3 x 64 x 96 = 43008 prunable
     * parameters = 0.0848: one warning line through Progress, and the plan file keeps both ratios and the reason.
     */
    @Test
    void aShortRatioIsSaidInOneLine() throws Exception {
        List<String> messages = new ArrayList<>();
        PruneResult r = new Pruner().run(PruneRequest.builder(model()).criterion("magnitude").ratio(0.2)
                .planOut(tmp.resolve("plan.json")).progress(Progress.lines(messages::add)).build());
        List<String> warnings = messages.stream().filter(m -> m.startsWith("warning: ")).toList();
        assertEquals(1, warnings.size(), messages.toString());
        assertTrue(warnings.get(0).startsWith("warning: achieved ratio 0.0848 is 0.1152 below the requested 0.2000"), warnings.get(0));
        assertTrue(warnings.get(0).contains("removed 0 of 12 KV groups (0 per layer), 57 of 288 MLP channels (19 per layer)"),
                warnings.get(0));
        assertEquals(3648.0 * 3 / (43008 * 3), r.plan().result().achievedRatio(), 1e-12);
        PruningPlan.Result saved = PruningPlan.load(tmp.resolve("plan.json")).result();
        assertEquals(0.2, saved.requestedRatio());
        assertEquals(warnings.get(0).substring("warning: ".length()), saved.shortfall());
    }

    @Test
    void flapRunsItsPaperSetupAndCompensation() throws Exception {
        Path out = tmp.resolve("out");
        PruneResult r = new Pruner().run(PruneRequest.builder(model()).criterion("flap").ratio(0.3).calibration(text())
                .samples(8).seqLen(32).out(out).build());
        assertEquals("adaptive", r.plan().allocation());
        assertEquals("user", r.settings().get("samples").from());
        assertEquals("paper", r.settings().get("allocation").from());
        assertEquals(256, r.stats().calibrationTokens());
        assertTrue(r.stats().afterSurgeryParams() > 0, "bias compensation ran");
        assertNotNull(r.plan().settings());
    }

    @Test
    void inMemoryRunKeepsSurgeryReadable() throws Exception {
        Path dir = model();
        try (ModelDir md = ModelDir.open(dir); NDManager m = NDManager.newBaseManager()) {
            PruneResult r = new Pruner().run(md, PruneRequest.builder(dir).criterion("magnitude").ratio(0.25)
                    .out(tmp.resolve("o")).build(), m);
            String name = r.surgery().tensors().names().iterator().next();
            assertNotNull(r.surgery().tensors().load(name, m));
        }
    }

    @Test
    void fixturePlanOnly() throws Exception {
        Path plan = tmp.resolve("plan.json");
        PruneResult r = new Pruner().run(PruneRequest.builder(Fixtures.root().resolve("fixtures/lopper-tiny"))
                .criterion("magnitude").ratio(0.2).planOut(plan).build());
        assertTrue(Files.exists(plan));
        assertEquals(null, r.surgery());
        // the official uniform count: int(0.2 x 4) = 0 KV groups and int(0.2 x 688) = 137 channels per layer
        for (var sel : r.selections()) {
            assertEquals(4, sel.keptKvGroups().length);
            assertEquals(688 - 137, sel.keptChannels().length);
        }
        assertTrue(r.stats().achievedRatio() > 0.14 && r.stats().achievedRatio() < 0.15, "achieved " + r.stats().achievedRatio());
    }

    @Test
    void refusesBeforeWork() throws Exception {
        Path dir = model();
        assertThrows(IllegalArgumentException.class, () -> new Pruner().run(PruneRequest.builder(dir).ratio(0.2).build()));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new Pruner().run(PruneRequest.builder(dir)
                .criterion("wanda-sp").ratio(0.2).allocation("global").calibration(text()).out(tmp.resolve("x")).build()));
        assertTrue(e.getMessage().contains("needs scores comparable across layers"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new Pruner().run(PruneRequest.builder(dir)
                .criterion("flap").option("order", "dense").ratio(0.2).calibration(text()).out(tmp.resolve("y")).build()));
        assertTrue(e.getMessage().contains("has no option 'order'"), e.getMessage());
    }

    @Test
    void aKilledFlapRunRerunWithTheSameRequestResumesAndGivesTheSamePlan() throws Exception {
        Path model = model();
        Path calib = text();
        String old = System.getProperty("lopper.cache");
        System.setProperty("lopper.cache", tmp.resolve("cache").toString());
        try {
            PruneRequest.Builder b = PruneRequest.builder(model).criterion("flap").ratio(0.3).calibration(calib).samples(8).seqLen(16);
            PruningPlan straight = new Pruner().run(b.planOut(tmp.resolve("straight.json")).build()).plan();
            List<String> messages = new ArrayList<>();
            Progress killer = new Progress() {
                @Override
                public void message(String line) {
                    messages.add(line);
                }

                @Override
                public void layerDone(int layer, int layers, long tokens, double layerSeconds, double elapsedSeconds) {
                    if (layer == 1 && messages.stream().noneMatch(m -> m.startsWith("resuming"))) {
                        throw new IllegalStateException("killed");
                    }
                }
            };
            PruneRequest again = b.planOut(tmp.resolve("resumed.json")).progress(killer).build();
            assertThrows(IllegalStateException.class, () -> new Pruner().run(again));
            PruningPlan resumed = new Pruner().run(again).plan();
            assertTrue(messages.stream().anyMatch(m -> m.startsWith("resuming calibration after layer 2/3")), messages.toString());
            assertEquals(straight.toJsonString(), resumed.toJsonString());
            try (var s = Files.list(tmp.resolve("cache/resume"))) {
                assertEquals(0, s.count(), "a finished job removes its checkpoints");
            }
        } finally {
            if (old == null) {
                System.clearProperty("lopper.cache");
            } else {
                System.setProperty("lopper.cache", old);
            }
        }
    }
}
