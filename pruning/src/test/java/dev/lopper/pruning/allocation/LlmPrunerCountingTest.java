package dev.lopper.pruning.allocation;

import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.HashSet;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * LLM-Pruner's counting ({@code LLMPruner/torch_pruning/pruner/algorithms/metapruner.py}), the numbers worked out by
 * hand from the official lines: {@code prune_local} {@code n_pruned = current_channels - int(init * (1 - r))}, heads
 * in runs of {@code consecutive_groups = head_dim} ({@code n_pruned // head_dim}); {@code prune_global}
 * {@code n_pruned = len(imp) - int(initial_total_channels * (1 - r))}, a head and a channel counting one.
 */
class LlmPrunerCountingTest {
    private static final String LLM = Allocation.Options.LLM_PRUNER;

    static Allocation.Options options(double ratio, String strategy, String counting) {
        return new Allocation.Options(ratio, new HashSet<>(List.of("heads", "channels")), strategy, null, null, null, 0, 0, counting);
    }

    /**
     * LLaMA-7B at 0.2: channels 11008 - int(11008 x 0.8 = 8806.4) = 2202 (int(0.2 x 11008) = int(2201.6) = 2201);
     * heads (q_proj rows 4096): 4096 - int(3276.8) = 820 channels, // 128 = 6 heads (int(6.4) = 6 alike).
     * At 0.25: 11008 - int(8256.0) = 2752, 4096 - int(3072.0) = 1024 -> 8 heads.
     */
    @Test
    void uniformLlama7bRemovesNMinusIntOfTheRest() {
        ModelConfig c = FlapStructuresTest.llama7b();
        Scores s = FlapStructuresTest.random(c, true);
        for (LayerSelection sel : FlapStructuresTest.allocate(c, s, options(0.2, "uniform", LLM))) {
            assertEquals(11008 - 2202, sel.keptChannels().length);
            assertEquals(32 - 6, sel.keptHeads().length);
        }
        for (LayerSelection sel : FlapStructuresTest.allocate(c, s, options(0.2, "uniform", null))) {
            assertEquals(11008 - 2201, sel.keptChannels().length, "independent: int(r x n)");
        }
        for (LayerSelection sel : FlapStructuresTest.allocate(c, s, options(0.25, "uniform", LLM))) {
            assertEquals(11008 - 2752, sel.keptChannels().length);
            assertEquals(32 - 8, sel.keptHeads().length);
        }
    }

    /**
     * LLaMA-3-8B's shape (8 KV heads of 128, root k_proj in llama3.py; 14336 channels) at 0.2: KV channels
     * 1024 - int(819.2) = 205, // 128 = 1 KV group; channels 14336 - int(11468.8) = 2868 (int() rule: 2867).
     */
    @Test
    void uniformGqaCountsKvHeadsInRunsOfHeadDim() {
        ModelConfig c = FlapStructuresTest.config(2, 4096, 128, 32, 8, 14336);
        for (LayerSelection sel : FlapStructuresTest.allocate(c, FlapStructuresTest.random(c, true), options(0.2, "uniform", LLM))) {
            assertEquals(7, sel.keptKvGroups().length);
            assertEquals(28, sel.keptHeads().length);
            assertEquals(14336 - 2868, sel.keptChannels().length);
        }
    }

    /**
     * Global, 2 layers of 4 MHA heads (head_dim 8, hidden 32) and 10 channels: U = 2 x (4 + 10) = 28 units; at 0.3
     * n_pruned = 28 - int(28 x 0.7 = 19.6) = 9 units, the 9 lowest scores: layer 0's heads 0.01 .. 0.03 (its last head stays, so
     * one more channel goes instead) and its channels 0.1 .. 0.6. Weighing parameters instead
     * (a head 4 x 32 x 8 = 1024, a channel 3 x 32 = 96; budget 0.3 x 2 x (4096 + 960) = 3033.6) removes other units.
     */
    @Test
    void globalCountsEveryUnitOnce() {
        ModelConfig c = FlapStructuresTest.config(2, 32, 8, 4, 4, 10);
        double[][] heads = {{0.01, 0.02, 0.03, 0.04}, {5, 6, 7, 8}};
        double[][] ch = {{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}, {1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0}};
        Scores s = new Scores("llm-pruner", true, StructureGraph.Kind.KV_GROUP, heads, heads, ch, null);
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), s, options(0.3, "global", LLM));
        List<LayerSelection> sel = plan.resolve(c);
        // heads 0.01, 0.02, 0.03 go (0.04 is the layer's last: it stays), then channels 0.1 .. 0.6
        assertEquals(List.of(3), Arrays.stream(sel.get(0).keptKvGroups()).boxed().toList());
        assertEquals(10 - 6, sel.get(0).keptChannels().length);
        assertEquals(4, sel.get(1).keptKvGroups().length);
        assertEquals(10, sel.get(1).keptChannels().length);
        int gone = 2 * 14 - sel.stream().mapToInt(x -> x.keptKvGroups().length + x.keptChannels().length).sum();
        assertEquals(9, gone);
        // parameter-weighted (the independent rule): heads 0.01 .. 0.03 (3072; each taken while removed + 1024 / 2 <=
        // 3033.6), 0.04 is the last head, then a channel would give 3072 + 96 / 2 = 3120 > 3033.6: it stops, no channel goes
        List<LayerSelection> weighted = Allocation.allocate(StructureGraph.of(c), s, options(0.3, "global", null)).resolve(c);
        assertEquals(List.of(3), Arrays.stream(weighted.get(0).keptKvGroups()).boxed().toList());
        assertEquals(10, weighted.get(0).keptChannels().length);
    }

    /**
     * int(0.2 x 4) = 0 KV groups of a 4-group model: the plan says so, beside the requested ratio; within 0.02 it
     * says nothing.
     */
    @Test
    void aShortfallIsReportedWithItsReason() {
        ModelConfig c = FlapStructuresTest.config(2, 256, 32, 8, 4, 688);
        Scores s = FlapStructuresTest.random(c, true);
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), s,
                new Allocation.Options(0.2, new HashSet<>(List.of("heads")), "uniform", null, null, null, 0, 0));
        assertEquals(0.2, plan.result().requestedRatio());
        assertEquals(0.0, plan.result().achievedRatio());
        String why = plan.result().shortfall();
        assertNotNull(why);
        assertTrue(why.contains("achieved ratio 0.0000 is 0.2000 below the requested 0.2000"), why);
        assertTrue(why.contains("removed 0 of 8 KV groups (0 per layer)"), why);
        assertTrue(why.contains("int(r x n)"), why);
        assertTrue(!why.contains("\n"), "one line");
        PruningPlan back = PruningPlan.parse(plan.toJson(), java.nio.file.Path.of("plan.json"));
        assertEquals(plan.result(), back.result());
        // heads and channels: 0 KV groups and 137 of 688 channels per layer = 0.1451 of the prunable parameters
        String both = Allocation.allocate(StructureGraph.of(c), s, options(0.2, "uniform", null)).result().shortfall();
        assertTrue(both.startsWith("achieved ratio 0.1451 is 0.0549 below"), both);
        assertTrue(both.contains("274 of 1376 MLP channels (137 per layer)"), both);
        PruningPlan ok = Allocation.allocate(StructureGraph.of(c), s,
                new Allocation.Options(0.2, new HashSet<>(List.of("channels")), "uniform", null, null, null, 0, 0));
        assertNull(ok.result().shortfall(), "int(0.2 x 688) = 137 channels: 0.1991, within 0.02");
        assertEquals(0.2, ok.result().requestedRatio());
    }
}
