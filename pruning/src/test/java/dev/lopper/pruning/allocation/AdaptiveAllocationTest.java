package dev.lopper.pruning.allocation;

import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.criteria.CfspCriterion;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** FLAP's AL-AM threshold and CFSP's coarse budgets on hand-made scores. */
class AdaptiveAllocationTest {
    @TempDir
    Path tmp;

    private ModelConfig config() throws Exception {
        // 4 layers, 4 KV groups of 2 heads (headDim 16, hidden 64), 96 channels
        return RandomModels.write(tmp.resolve("m"), RandomModels.llama().withLayers(4).withHeads(8, 4));
    }

    /** Channel scores: layer l's channel j scores l * 1000 + j, heads all high: only channels of early layers go. */
    @Test
    void flapThresholdRemovesTheLowestUntilTheParameterBudget() throws Exception {
        ModelConfig c = config();
        double[][] ch = new double[4][96];
        double[][] kv = new double[4][4];
        for (int l = 0; l < 4; l++) {
            for (int j = 0; j < 96; j++) {
                ch[l][j] = l * 1000 + j;
            }
            java.util.Arrays.fill(kv[l], 1e9);
        }
        Scores s = new Scores("test", true, StructureGraph.Kind.KV_GROUP, kv, null, ch, null);
        // prunable: heads 4 x 4 groups x (2*16*64*2 + 2*16*64) = 4 x 4 x 6144; channels 4 x 96 x 192
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), s, Allocation.Options.of(0.2, Set.of("heads", "channels"), "adaptive"));
        List<LayerSelection> sel = plan.resolve(c);
        long total = 4 * 4 * 6144 + 4 * 96 * 192;
        // sorted descending, the position whose cumulative kept weight is closest to 0.8 x total is the threshold,
        // and (strict >) the threshold unit itself goes too: 179 + 1 channels, the lowest first
        int removed = (int) Math.round((total - 0.8 * total) / 192) + 1;
        assertEquals(180, removed);
        assertEquals(1, sel.get(0).keptChannels().length, "layer 0 lost all 96; its best channel stays");
        assertEquals(95, sel.get(0).keptChannels()[0]);
        assertEquals(96 - (removed - 96), sel.get(1).keptChannels().length);
        assertEquals(96, sel.get(2).keptChannels().length);
        assertEquals(4, sel.get(0).keptKvGroups().length, "high-scored heads stay");
        assertEquals(0.2, plan.result().achievedRatio(), 192.0 / (4 * 96 * 192 + 4 * 4 * 6144), "within one channel of the target");
    }

    @Test
    void nonComparableScoresAreStandardizedPerLayerAndKeepFirstLastRespected() throws Exception {
        ModelConfig c = config();
        double[][] ch = new double[4][96];
        double[][] kv = new double[4][4];
        for (int l = 0; l < 4; l++) {
            for (int j = 0; j < 96; j++) {
                ch[l][j] = Math.pow(10, l) * (j + 1); // scale drifts by 10x per layer
            }
            for (int g = 0; g < 4; g++) {
                kv[l][g] = Math.pow(10, l) * (g + 1);
            }
        }
        Scores s = new Scores("drift", false, StructureGraph.Kind.KV_GROUP, kv, null, ch, null);
        List<LayerSelection> sel = Allocation.allocate(StructureGraph.of(c), s,
                new Allocation.Options(0.3, Set.of("heads", "channels"), "adaptive", null, null, null, 1, 1)).resolve(c);
        assertEquals(96, sel.get(0).keptChannels().length, "--keep-first 1");
        assertEquals(96, sel.get(3).keptChannels().length, "--keep-last 1");
        // after standardization layers 1 and 2 look alike (10x apart raw), so they lose the same up to the tie at
        // the threshold, which rounding breaks
        assertTrue(Math.abs(sel.get(1).keptChannels().length - sel.get(2).keptChannels().length) <= 1);
        assertEquals(sel.get(1).keptKvGroups().length, sel.get(2).keptKvGroups().length);
        assertTrue(sel.get(1).keptChannels().length < 96);
    }

    @Test
    void cfspKeepRatiosAverageToOneMinusRatioAndFollowImportance() {
        double[] importance = {20000, 60000, 40000, 90000};
        double[] keep = CfspBlockAllocation.keepRatios(importance, 0.5);
        double mean = java.util.Arrays.stream(keep).average().orElse(0);
        assertEquals(0.5, mean, 1e-12);
        assertTrue(keep[0] < keep[2] && keep[2] < keep[1] && keep[1] < keep[3], java.util.Arrays.toString(keep));
        for (double k : keep) {
            assertTrue(k > 0 && k < 1);
        }
        // a large ratio forces the deviation shrink: still below 1 everywhere
        double[] tight = CfspBlockAllocation.keepRatios(new double[] {0, 0, 0, 1e6}, 0.2);
        assertTrue(java.util.Arrays.stream(tight).max().orElse(2) < 1, java.util.Arrays.toString(tight));
        assertEquals(0.8, java.util.Arrays.stream(tight).average().orElse(0), 1e-12);
        assertArrayEquals(new double[] {1, 1}, CfspBlockAllocation.keepRatios(new double[] {1, 2}, 0));
    }

    @Test
    void cfspBudgetsComeFromBlockImportance() throws Exception {
        ModelConfig c = config();
        double[][] ch = new double[4][96];
        double[][] kv = new double[4][4];
        for (int l = 0; l < 4; l++) {
            for (int j = 0; j < 96; j++) {
                ch[l][j] = j;
            }
            kv[l] = new double[] {1, 2, 3, 4};
        }
        double[] block = {10000, 50000, 30000, 70000};
        Scores s = new Scores(CfspCriterion.NAME, false, StructureGraph.Kind.KV_GROUP, kv, null, ch, block);
        List<LayerSelection> sel = Allocation.allocate(StructureGraph.of(c), s, Allocation.Options.of(0.4, Set.of("channels"), "cfsp-blocks")).resolve(c);
        double[] keep = CfspBlockAllocation.keepRatios(block, 0.4);
        for (int l = 0; l < 4; l++) {
            assertEquals((int) (96 * keep[l]) + 1, sel.get(l).keptChannels().length, "layer " + l);
            // the lowest-scored channels go: kept are the top ones
            assertEquals(95, sel.get(l).keptChannels()[sel.get(l).keptChannels().length - 1]);
        }
        assertTrue(sel.get(0).keptChannels().length < sel.get(3).keptChannels().length, "more block change, more kept");
    }
}
