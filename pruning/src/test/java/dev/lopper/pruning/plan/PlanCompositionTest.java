package dev.lopper.pruning.plan;

import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.graph.LayerSelection;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link PruningPlan#compose}: indices of the second plan are mapped back by hand-computed expectations. */
class PlanCompositionTest {
    @TempDir
    Path tmp;

    @Test
    void composedPlanMapsTheSecondPlansIndicesBackToTheOriginal() throws Exception {
        // 3 layers, 4 query heads in 2 KV groups (r = 2), 96 channels
        ModelConfig c = RandomModels.write(tmp.resolve("m"), RandomModels.llama().withLayers(3));
        PruningPlan first = plan(List.of(1), List.of(
                PruningPlan.LayerPlan.kept(0, null, null, new int[] {0, 5, 7, 40, 95})));
        // after the first plan: layer 0 (5 channels: 0,5,7,40,95), layer 1 = original 2
        PruningPlan second = plan(List.of(), List.of(
                PruningPlan.LayerPlan.kept(0, null, null, new int[] {1, 3}),            // keeps original 5 and 40
                PruningPlan.LayerPlan.kept(1, new int[] {1}, null, new int[] {2, 10})));  // original layer 2
        PruningPlan total = PruningPlan.compose(c, first, second);
        assertEquals(List.of(1), total.removedLayers());
        List<LayerSelection> s = total.resolve(c);
        assertTrue(s.get(1).removed());
        assertArrayEquals(new int[] {5, 40}, s.get(0).keptChannels());
        assertArrayEquals(new int[] {0, 1}, s.get(0).keptKvGroups());
        assertArrayEquals(new int[] {1}, s.get(2).keptKvGroups());
        assertArrayEquals(new int[] {2, 3}, s.get(2).keptHeads());
        assertArrayEquals(new int[] {2, 10}, s.get(2).keptChannels());

        // the same cuts as applying the two plans in turn: shapes agree
        ModelConfig mid = LayerSelection.prunedConfig(c, first.resolve(c));
        ModelConfig twice = LayerSelection.prunedConfig(mid, second.resolve(mid));
        ModelConfig once = LayerSelection.prunedConfig(c, s);
        assertEquals(twice.numLayers(), once.numLayers());
        for (int l = 0; l < once.numLayers(); l++) {
            LayerShape a = twice.layer(l);
            LayerShape b = once.layer(l);
            assertEquals(a.numHeads(), b.numHeads());
            assertEquals(a.numKvHeads(), b.numKvHeads());
            assertEquals(a.intermediateSize(), b.intermediateSize());
        }
    }

    @Test
    void composingWithTheEmptyPlanChangesNothing() throws Exception {
        ModelConfig c = RandomModels.write(tmp.resolve("m"), RandomModels.llama().withLayers(2));
        PruningPlan p = plan(List.of(), List.of(PruningPlan.LayerPlan.kept(1, new int[] {0}, null, new int[] {3, 4})));
        // the same selections (the composed plan writes the heads out: kept lists, where p lets them follow the groups)
        assertEquals(p.resolve(c), PruningPlan.compose(c, PruningPlan.empty(), p).resolve(c));
        assertEquals(p.resolve(c), PruningPlan.compose(c, p, PruningPlan.empty()).resolve(c));
    }

    private static PruningPlan plan(List<Integer> removed, List<PruningPlan.LayerPlan> layers) {
        return new PruningPlan("manual", null, null, List.of("heads", "channels", "layers"), null, null, null, null, "test",
                removed, layers, null, null);
    }
}
