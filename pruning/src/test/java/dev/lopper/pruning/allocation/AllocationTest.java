package dev.lopper.pruning.allocation;

import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Allocation from synthetic scores: counts, which units go, GQA validity, achieved ratios. */
class AllocationTest {
    @TempDir
    Path tmp;

    /** 4 layers, 8 heads / 4 KV groups (group size 2), 96 channels, hidden 64, head_dim 16. */
    private ModelConfig config() throws Exception {
        return RandomModels.write(tmp.resolve("m"), RandomModels.llama().withHeads(8, 4).withLayers(4));
    }

    /** Scores where unit i of layer l scores (l + 1) * 1000 + a scrambled value of i: layer 0 is least important. */
    private static Scores scores(ModelConfig c, boolean comparable) {
        int n = c.numLayers();
        double[][] kv = new double[n][];
        double[][] heads = new double[n][];
        double[][] ch = new double[n][];
        double[] layers = new double[n];
        for (int l = 0; l < n; l++) {
            LayerShape s = c.layer(l);
            int ll = l;
            kv[l] = new double[s.numKvHeads()];
            Arrays.setAll(kv[l], i -> (ll + 1) * 1000 + (i * 3 + 1) % s.numKvHeads());
            heads[l] = new double[s.numHeads()];
            Arrays.setAll(heads[l], i -> (ll + 1) * 1000 + (i * 5 + 3) % s.numHeads());
            ch[l] = new double[s.intermediateSize()];
            Arrays.setAll(ch[l], i -> (ll + 1) * 1000 + (i * 37 + 11) % s.intermediateSize());
            layers[l] = new double[] {3, 1, 4, 2}[l];
        }
        return new Scores("synthetic", comparable, StructureGraph.Kind.KV_GROUP, kv, heads, ch, layers);
    }

    @Test
    void uniformRemovesTheSameFractionOfTheLowestInEveryLayer() throws Exception {
        ModelConfig c = config();
        Scores s = scores(c, false);
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), s, Allocation.Options.of(0.25, Set.of("heads", "channels"), "uniform"));
        List<LayerSelection> sel = plan.resolve(c);
        for (LayerSelection l : sel) {
            assertEquals(3, l.keptKvGroups().length);
            assertEquals(6, l.keptHeads().length);
            assertEquals(72, l.keptChannels().length);
            // the lowest KV group: score (3g+1) % 4 is 0 for g = 1
            assertArrayEquals(new int[] {0, 2, 3}, l.keptKvGroups());
            assertArrayEquals(new int[] {0, 1, 4, 5, 6, 7}, l.keptHeads());
            double minKept = Arrays.stream(l.keptChannels()).mapToDouble(i -> s.channels()[l.layer()][i]).min().orElseThrow();
            double maxGone = Arrays.stream(Allocation.complement(96, l.keptChannels())).mapToDouble(i -> s.channels()[l.layer()][i]).max().orElseThrow();
            assertTrue(maxGone < minKept, "only the lowest channels go");
        }
        assertEquals(0.25, plan.result().achievedRatio(), 1e-12);
        assertEquals("uniform", plan.allocation());
        assertEquals(List.of("heads", "channels"), plan.targets());
    }

    @Test
    void uniformChannelsAbsorbTheHeadRoundingWithTheAbsorbRule() throws Exception {
        ModelConfig c = config();
        // per layer: attention 24576 + MLP 18432 = 43008 prunable; 0.2 -> 8602; round(0.8) = 1 KV group = 6144,
        // so (8602 - 6144) / 192 = 12.8 -> 13 channels go instead of round(0.2 x 96) = 19
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), scores(c, false),
                new Allocation.Options(0.2, Set.of("heads", "channels"), "uniform", null, null, null, 0, 0, Allocation.Options.ABSORB));
        for (LayerSelection l : plan.resolve(c)) {
            assertEquals(3, l.keptKvGroups().length);
            assertEquals(83, l.keptChannels().length);
        }
        assertEquals(0.2, plan.result().achievedRatio(), 192.0 / 43008);
        // explicit per-kind ratios are taken as given (rounded)
        PruningPlan split = Allocation.allocate(StructureGraph.of(c), scores(c, false),
                new Allocation.Options(0.2, Set.of("heads", "channels"), "uniform", null, 0.2, 0.2, 0, 0, Allocation.Options.ABSORB));
        assertEquals(3, split.resolve(c).get(0).keptKvGroups().length);
        assertEquals(77, split.resolve(c).get(0).keptChannels().length);
        // the default (official) rule counts each kind on its own: int(0.2 x 4) = 0 groups, int(0.2 x 96) = 19 channels
        for (Allocation.Options o : List.of(Allocation.Options.of(0.2, Set.of("heads", "channels"), "uniform"),
                new Allocation.Options(0.2, Set.of("heads", "channels"), "uniform", null, 0.2, 0.2, 0, 0))) {
            for (LayerSelection l : Allocation.allocate(StructureGraph.of(c), scores(c, false), o).resolve(c)) {
                assertEquals(4, l.keptKvGroups().length);
                assertEquals(77, l.keptChannels().length);
            }
        }
    }

    @Test
    void uniformQueryHeadsKeepEveryGroupTheSameSize() throws Exception {
        ModelConfig c = RandomModels.write(tmp.resolve("q"), RandomModels.llama().withHeads(8, 2).withLayers(2));
        Scores s = scores(c, false);
        Allocation.Options o = new Allocation.Options(0.5, Set.of("heads"), "uniform", StructureGraph.Kind.QUERY_HEAD, null, null, 0, 0);
        List<LayerSelection> sel = Allocation.allocate(StructureGraph.of(c), s, o).resolve(c);
        for (LayerSelection l : sel) {
            assertArrayEquals(new int[] {0, 1}, l.keptKvGroups());
            assertEquals(4, l.keptHeads().length);
            assertEquals(2, Arrays.stream(l.keptHeads()).filter(h -> h < 4).count(), "2 of 4 heads kept in group 0");
            // scores (5i+3)%8: group 0 heads 0..3 -> 3,0,5,2 so heads 0 and 2 stay; group 1 -> 7,4,1,6 so 4 and 7 stay
            assertArrayEquals(new int[] {0, 2, 4, 7}, l.keptHeads());
        }
    }

    @Test
    void ratioZeroCutsNothingAndKeepFirstLastAreRespected() throws Exception {
        ModelConfig c = config();
        PruningPlan none = Allocation.allocate(StructureGraph.of(c), scores(c, true), Allocation.Options.of(0, Set.of("heads", "channels"), "global"));
        assertTrue(none.layers().isEmpty() && none.removedLayers().isEmpty());
        Allocation.Options o = new Allocation.Options(0.5, Set.of("heads", "channels"), "uniform", null, null, null, 1, 1);
        List<LayerSelection> sel = Allocation.allocate(StructureGraph.of(c), scores(c, false), o).resolve(c);
        assertTrue(sel.get(0).unchanged(c.layer(0)));
        assertTrue(sel.get(3).unchanged(c.layer(3)));
        assertFalse(sel.get(1).unchanged(c.layer(1)));
        assertThrows(IllegalArgumentException.class, () -> Allocation.allocate(StructureGraph.of(c), scores(c, false),
                new Allocation.Options(0.5, Set.of("heads"), "uniform", null, null, null, 2, 2)));
    }

    @Test
    void globalTakesFromTheLeastImportantLayersAndHitsTheRatio() throws Exception {
        ModelConfig c = config();
        // layer 0 can give 3 groups + 95 channels = 36672 of 172032 prunable parameters (21%); ask for 25%
        double ratio = 0.25;
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), scores(c, true), Allocation.Options.of(ratio, Set.of("heads", "channels"), "global"));
        List<LayerSelection> sel = plan.resolve(c);
        // layer 0 scores lowest everywhere: it loses all but one group and one channel before layer 1 loses anything
        assertEquals(1, sel.get(0).keptKvGroups().length);
        assertEquals(1, sel.get(0).keptChannels().length);
        assertFalse(sel.get(1).unchanged(c.layer(1)), "the rest comes from layer 1");
        assertTrue(sel.get(2).unchanged(c.layer(2)));
        assertTrue(sel.get(3).unchanged(c.layer(3)));
        StructureGraph g = StructureGraph.of(c);
        long unit = g.kvGroups(0).parametersPerUnit();
        double tolerance = (double) unit / plan.result().prunableParams();
        assertEquals(ratio, plan.result().achievedRatio(), tolerance, "within one KV group of the target");
        assertThrows(IllegalArgumentException.class, () -> Allocation.allocate(g, scores(c, false),
                Allocation.Options.of(0.2, Set.of("heads"), "global")), "per-layer scores cannot be ranked globally");
    }

    @Test
    void globalQueryHeadSlotsKeepGroupsEqual() throws Exception {
        ModelConfig c = RandomModels.write(tmp.resolve("q"), RandomModels.llama().withHeads(8, 2).withLayers(3));
        Allocation.Options o = new Allocation.Options(0.3, Set.of("heads"), "global", StructureGraph.Kind.QUERY_HEAD, null, null, 0, 0);
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), scores(c, true), o);
        List<LayerSelection> sel = plan.resolve(c); // resolve checks every group keeps the same count
        assertEquals(1, sel.get(0).keptHeads().length / 2, "layer 0 keeps one head per group");
        assertArrayEquals(new int[] {0, 1}, sel.get(0).keptKvGroups());
        assertTrue(plan.result().achievedRatio() > 0.2 && plan.result().achievedRatio() < 0.4, "" + plan.result().achievedRatio());
    }

    @Test
    void layerRemovalTakesTheLowestScoredLayers() throws Exception {
        ModelConfig c = config();
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), scores(c, false), Allocation.Options.of(0.5, Set.of("layers"), "uniform"));
        assertEquals(List.of(1, 3), plan.removedLayers());
        assertEquals(0.5, plan.result().achievedRatio(), 1e-12);
        assertThrows(IllegalArgumentException.class, () -> Allocation.allocate(StructureGraph.of(c), scores(c, false),
                Allocation.Options.of(0.5, Set.of("layers", "heads"), "uniform")));
        PruningPlan global = Allocation.allocate(StructureGraph.of(c), scores(c, true),
                Allocation.Options.of(0.3, Set.of("layers", "channels"), "global"));
        global.validate(c);
        assertTrue(global.result().achievedRatio() > 0.2, "" + global.result().achievedRatio());
    }

    @Test
    void unknownStrategyOrMissingScoresFailClearly() throws Exception {
        ModelConfig c = config();
        Scores s = scores(c, true);
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Allocation.allocate(StructureGraph.of(c), s,
                Allocation.Options.of(0.2, Set.of("heads"), "no-such-strategy"))).getMessage().contains("uniform"));
        Scores noQuery = new Scores("x", true, StructureGraph.Kind.KV_GROUP, s.kvGroups(), null, s.channels(), null);
        assertThrows(IllegalArgumentException.class, () -> Allocation.allocate(StructureGraph.of(c), noQuery,
                new Allocation.Options(0.5, Set.of("heads"), "uniform", StructureGraph.Kind.QUERY_HEAD, null, null, 0, 0)));
        Scores wrong = new Scores("x", true, StructureGraph.Kind.KV_GROUP, s.kvGroups(), null, new double[4][5], null);
        assertThrows(IllegalStateException.class, () -> Allocation.allocate(StructureGraph.of(c), wrong,
                Allocation.Options.of(0.2, Set.of("channels"), "uniform")));
    }
}
