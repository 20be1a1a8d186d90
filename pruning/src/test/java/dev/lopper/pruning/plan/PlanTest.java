package dev.lopper.pruning.plan;

import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.LayerSelection;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The plan document: round trip, hand-written forms, and every bad input of issue 4 item 7. */
class PlanTest {
    @TempDir
    Path tmp;

    /** 3 layers, 8 heads / 2 KV groups (group size 4), 96 channels. */
    private ModelConfig config() throws Exception {
        return RandomModels.write(tmp.resolve("m"), RandomModels.llama().withHeads(8, 2).withLayers(3));
    }

    private PruningPlan handWritten(String layersJson, String removed, String targets) throws Exception {
        String json = "{\"format\": \"lopper-plan/1\", \"criterion\": \"manual\", \"targets\": " + targets
                + ", \"removedLayers\": " + removed + ", \"layers\": " + layersJson + "}";
        Path f = tmp.resolve("plan.json");
        Files.writeString(f, json);
        return PruningPlan.load(f);
    }

    @Test
    void roundTripKeepsEveryField() throws Exception {
        ModelConfig c = config();
        PruningPlan plan = Allocation.toPlan(c, List.of(
                        new LayerSelection(0, false, new int[] {1}, new int[] {4, 5, 6, 7}, Allocation.complement(96, new int[] {3, 9})),
                        LayerSelection.dropped(1),
                        new LayerSelection(2, false, new int[] {0, 1}, new int[] {1, 2, 5, 6}, LayerSelection.range(96))),
                PruningPlan.empty())
                .withProvenance("magnitude", new ObjectMapper().createObjectNode().put("norm", "l1"), 0.25, List.of("heads", "channels", "layers"),
                        "global", new PruningPlan.Calibration("fixtures/text/kjv-train.txt", 128, 256), 7L)
                .withModelHash("sha256:abc");
        Path f = tmp.resolve("out/plan.json");
        plan.save(f);
        PruningPlan back = PruningPlan.load(f);
        assertEquals(plan.toJson(), back.toJson());
        assertEquals(plan.resolve(c), back.resolve(c));
        assertEquals(new PruningPlan.Calibration("fixtures/text/kjv-train.txt", 128, 256), back.calibration());
        assertEquals(7L, back.seed());
        assertEquals("sha256:abc", back.modelHash());
        assertEquals("l1", back.criterionOptions().get("norm").asText());
        assertTrue(back.toolVersion().startsWith("lopper "), back.toolVersion());
        try (var s = Files.list(f.getParent())) {
            assertEquals(1, s.count(), "no temporary file left");
        }
    }

    @Test
    void handWrittenRemovedFormsResolve() throws Exception {
        ModelConfig c = config();
        PruningPlan p = handWritten("[{\"layer\": 2, \"removedKvGroups\": [0], \"removedChannels\": [0, 95]},"
                + " {\"layer\": 0, \"removedHeads\": [0, 1, 4, 5]}]", "[]", "[\"heads\", \"channels\"]");
        List<LayerSelection> sel = p.resolve(c);
        assertArrayEquals(new int[] {1}, sel.get(2).keptKvGroups());
        assertArrayEquals(new int[] {4, 5, 6, 7}, sel.get(2).keptHeads());
        assertEquals(94, sel.get(2).keptChannels().length);
        assertArrayEquals(new int[] {0, 1}, sel.get(0).keptKvGroups());
        assertArrayEquals(new int[] {2, 3, 6, 7}, sel.get(0).keptHeads());
        assertEquals(LayerSelection.whole(1, c.layer(1)), sel.get(1));
        // removing query heads 4..7 only: their group goes with them
        PruningPlan q = handWritten("[{\"layer\": 1, \"keptHeads\": [0, 1, 2, 3]}]", "[]", "[\"heads\"]");
        assertArrayEquals(new int[] {0}, q.resolve(c).get(1).keptKvGroups());
    }

    @Test
    void ratioOutsideRangeIsRejected() throws Exception {
        Path f = tmp.resolve("p.json");
        Files.writeString(f, "{\"format\": \"lopper-plan/1\", \"ratio\": 1.0}");
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> PruningPlan.load(f));
        assertTrue(e.getMessage().contains("'ratio'") && e.getMessage().contains("[0, 1)"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Allocation.Options.of(-0.1, Set.of("heads"), "uniform"));
        assertThrows(IllegalArgumentException.class, () -> Allocation.Options.of(1.0, Set.of("heads"), "uniform"));
    }

    @Test
    void wrongFormatOrUnknownFieldIsRejected() throws Exception {
        Path f = tmp.resolve("p.json");
        Files.writeString(f, "{\"format\": \"lopper-plan/2\"}");
        assertTrue(assertThrows(ModelFormatException.class, () -> PruningPlan.load(f)).getMessage().contains("lopper-plan/1"));
        Files.writeString(f, "{\"format\": \"lopper-plan/1\", \"layer\": []}");
        assertTrue(assertThrows(ModelFormatException.class, () -> PruningPlan.load(f)).getMessage().contains("'layer'"));
        Files.writeString(f, "{\"format\": \"lopper-plan/1\", \"layers\": [{\"layer\": 0, \"keptHeads\": [\"a\"]}]}");
        assertTrue(assertThrows(ModelFormatException.class, () -> PruningPlan.load(f)).getMessage().contains("layers[0].keptHeads[0]"));
        Files.writeString(f, "{ not json");
        assertThrows(ModelFormatException.class, () -> PruningPlan.load(f));
    }

    @Test
    void nonexistentLayerHeadGroupOrChannelIsRejected() throws Exception {
        ModelConfig c = config();
        assertMessage(c, "[{\"layer\": 3, \"keptChannels\": [0]}]", "[]", "layer 3 does not exist");
        assertMessage(c, "[]", "[5]", "layer 5 does not exist");
        assertMessage(c, "[{\"layer\": 0, \"keptHeads\": [0, 8]}]", "[]", "query head 8 does not exist");
        assertMessage(c, "[{\"layer\": 0, \"keptKvGroups\": [2]}]", "[]", "KV group 2 does not exist");
        assertMessage(c, "[{\"layer\": 1, \"removedChannels\": [96]}]", "[]", "MLP channel 96 does not exist");
        assertMessage(c, "[{\"layer\": 1, \"removedChannels\": [3, 3]}]", "[]", "listed twice");
        assertMessage(c, "[{\"layer\": 1, \"keptChannels\": [3], \"removedChannels\": [4]}]", "[]", "use one");
        assertMessage(c, "[{\"layer\": 1, \"keptChannels\": [3]}]", "[1]", "also has cuts");
    }

    @Test
    void unequalGqaGroupsAreRejected() throws Exception {
        ModelConfig c = config();
        assertMessage(c, "[{\"layer\": 0, \"keptHeads\": [0, 1, 4]}]", "[]", "same number of query heads");
        assertMessage(c, "[{\"layer\": 0, \"keptKvGroups\": [0], \"keptHeads\": [0, 4]}]", "[]", "KV group 1 is removed");
    }

    @Test
    void removingEveryHeadOrChannelNeedsLayerTarget() throws Exception {
        ModelConfig c = config();
        assertMessage(c, "[{\"layer\": 1, \"keptKvGroups\": []}]", "[]", "removes every attention head");
        assertMessage(c, "[{\"layer\": 1, \"keptChannels\": []}]", "[]", "removes every MLP channel");
        assertMessage(c, "[]", "[0, 1, 2]", "at least one must stay");
        // with layer removal asked for, an attention-free layer is allowed
        PruningPlan ok = handWritten("[{\"layer\": 1, \"keptKvGroups\": []}]", "[]", "[\"heads\", \"layers\"]");
        assertEquals(0, ok.resolve(c).get(1).keptHeads().length);
    }

    @Test
    void planForADifferentModelIsRejected() throws Exception {
        config();
        String hash = ModelHash.of(tmp.resolve("m"));
        RandomModels.write(tmp.resolve("other"), RandomModels.llama().withHeads(8, 2).withLayers(3).withSeed(43));
        String other = ModelHash.of(tmp.resolve("other"));
        RandomModels.write(tmp.resolve("wider"), RandomModels.llama().withHeads(8, 2).withLayers(4));
        assertNotEquals(hash, ModelHash.of(tmp.resolve("wider")));
        assertEquals(hash, ModelHash.of(tmp.resolve("m")), "hash is deterministic");
        PruningPlan p = PruningPlan.empty().withModelHash(hash);
        p.checkModel(hash);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> p.checkModel(ModelHash.of(tmp.resolve("wider"))));
        assertTrue(e.getMessage().contains("different model"), e.getMessage());
        // same shapes, other weights (e.g. a fine-tune): told apart by the sampled data bytes
        assertNotEquals(hash, other);
        assertThrows(IllegalArgumentException.class, () -> p.checkModel(other));
    }

    private void assertMessage(ModelConfig c, String layers, String removed, String expected) throws Exception {
        PruningPlan p = handWritten(layers, removed, "[\"heads\", \"channels\"]");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> p.validate(c));
        assertTrue(e.getMessage().contains(expected), "expected '" + expected + "' in: " + e.getMessage());
    }
}
