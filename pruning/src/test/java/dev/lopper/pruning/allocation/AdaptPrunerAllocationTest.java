package dev.lopper.pruning.allocation;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import dev.lopper.calibration.CalibrationData;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.Activations;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.PruneResult;
import dev.lopper.pruning.Pruner;
import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.criteria.ScoringContext;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Adapt-Pruner's layer-wise sparsity against hand-computed values, and its layer importance against plain loops. */
class AdaptPrunerAllocationTest {
    @TempDir
    Path tmp;

    /** Importances 10, 20, 40, 30: mean 25, deviations -15, -5, 15, 5, largest 15, so normalized -1, -1/3, 1, 1/3. */
    private static final double[] IMPORTANCE = {10, 20, 40, 30};

    @Test
    void sparsitiesFollowTheOfficialUpdate() {
        assertArrayEquals(new double[] {-1, -1.0 / 3, 1, 1.0 / 3}, AdaptPrunerAllocation.normalized(IMPORTANCE), 1e-15);
        // s = 0.5 - 0.02 x norm
        double[] s = AdaptPrunerAllocation.sparsities(IMPORTANCE, 0.5, 0.02);
        assertArrayEquals(new double[] {0.52, 0.5 + 0.02 / 3, 0.48, 0.5 - 0.02 / 3}, s, 1e-15);
        assertEquals(0.5, (s[0] + s[1] + s[2] + s[3]) / 4, 1e-15, "the mean sparsity is the target");
        assertTrue(s[0] > s[1] && s[1] > s[3] && s[3] > s[2], "less importance, more pruning");
        // bounds of the official update: [0, 0.99]
        assertArrayEquals(new double[] {0.03, 0.01 + 0.02 / 3, 0, 0.01 - 0.02 / 3}, AdaptPrunerAllocation.sparsities(IMPORTANCE, 0.01, 0.02), 1e-15);
        assertEquals(0.99, AdaptPrunerAllocation.sparsities(IMPORTANCE, 0.98, 0.02)[0], 0);
        assertArrayEquals(new double[] {0.3, 0.3}, AdaptPrunerAllocation.sparsities(new double[] {5, 5}, 0.3, 0.02), 0, "alike layers: uniform");
    }

    @Test
    void officialCounting() {
        // C = 96 channels at s = 0.52: int(96 x 0.48) = int(46.08) = 46 kept, 50 removed
        assertEquals(50, AdaptPrunerAllocation.removed(96, 1, 0.52));
        // 4 KV groups of head_dim 16 = 64 channels at s = 0.48: int(64 x 0.52) = int(33.28) = 33 kept, 31 removed, 31 // 16 = 1 group
        assertEquals(1, AdaptPrunerAllocation.removed(4, 16, 0.48));
        assertEquals(0, AdaptPrunerAllocation.removed(4, 16, 0));
    }

    /** 4 layers, 4 KV groups of 2 heads (head_dim 16), 96 channels; importances given, ratio 0.5, A = 0.02. */
    @Test
    void perLayerCountsMatchTheFormula() throws Exception {
        ModelConfig c = RandomModels.write(tmp.resolve("m"), RandomModels.llama().withLayers(4).withHeads(8, 4));
        double[][] ch = new double[4][96];
        double[][] kv = new double[4][4];
        for (int l = 0; l < 4; l++) {
            for (int j = 0; j < 96; j++) {
                ch[l][j] = (j * 37 + l * 11) % 96; // a permutation per layer: the lowest k are known
            }
            kv[l] = new double[] {3, 0, 2, 1};
        }
        Scores s = new Scores("test", false, StructureGraph.Kind.KV_GROUP, kv, null, ch, null).withLayers(IMPORTANCE);
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), s, Allocation.Options.of(0.5, Set.of("heads", "channels"), "adapt-pruner"));
        List<LayerSelection> sel = plan.resolve(c);
        // channels removed, 96 - int(96 x (1 - s)): s = 0.52 -> 50; 0.50667 -> 96 - 47 = 49; 0.48 -> 96 - 49 = 47; 0.49333 -> 96 - 48 = 48
        int[] channelsRemoved = {50, 49, 47, 48};
        // KV groups, (64 - int(64 x (1 - s))) // 16: 34 // 16 = 2; 33 // 16 = 2; 31 // 16 = 1; 32 // 16 = 2
        int[] groupsRemoved = {2, 2, 1, 2};
        for (int l = 0; l < 4; l++) {
            LayerSelection ls = sel.get(l);
            assertEquals(96 - channelsRemoved[l], ls.keptChannels().length, "layer " + l + " channels");
            for (int j : ls.keptChannels()) {
                assertTrue(ch[l][j] >= channelsRemoved[l], "layer " + l + " kept channel " + j + " is among the highest scored");
            }
            assertEquals(4 - groupsRemoved[l], ls.keptKvGroups().length, "layer " + l + " KV groups");
            int[] expectedGroups = groupsRemoved[l] == 2 ? new int[] {0, 2} : new int[] {0, 2, 3};
            assertArrayEquals(expectedGroups, ls.keptKvGroups(), "layer " + l + ": groups scored 0 and 1 go first");
        }
        assertEquals("adapt-pruner", plan.allocation());
    }

    /**
     * An incremental step: layers 0..3 already lost 10, 20, 30, 40 of 96 channels (scored -infinity). Mean sparsity
     * so far 25/96; at ratio 0.5 each layer moves by 0.5 - 25/96, minus 0.02 x norm.
     */
    @Test
    void incrementalStepStartsEachLayerFromWhereItIs() throws Exception {
        ModelConfig c = RandomModels.write(tmp.resolve("m"), RandomModels.llama().withLayers(4).withHeads(8, 4));
        int[] already = {10, 20, 30, 40};
        Scores s = scoresWithRemoved(already).withLayers(IMPORTANCE);
        List<LayerSelection> sel = Allocation.allocate(StructureGraph.of(c), s,
                Allocation.Options.of(0.5, Set.of("channels"), "adapt-pruner")).resolve(c);
        // s = 0.36375, 0.4545833, 0.5320833, 0.6495833; kept int(96 (1 - s)) = 61, 52, 44, 33
        int[] kept = {61, 52, 44, 33};
        for (int l = 0; l < 4; l++) {
            assertEquals(kept[l], sel.get(l).keptChannels().length, "layer " + l);
            for (int j : sel.get(l).keptChannels()) {
                assertTrue(j >= already[l], "layer " + l + " keeps no removed channel");
            }
        }
        // all layers at 48/96 and the mean already at the ratio: layer 2 (most important) would drop to 0.48 (47
        // channels) but never gets a removed channel back
        sel = Allocation.allocate(StructureGraph.of(c), scoresWithRemoved(new int[] {48, 48, 48, 48}).withLayers(IMPORTANCE),
                Allocation.Options.of(0.5, Set.of("channels"), "adapt-pruner")).resolve(c);
        assertArrayEquals(new int[] {46, 47, 48, 48}, sel.stream().mapToInt(x -> x.keptChannels().length).toArray());
    }

    /** Channel j of layer l scores j, the first {@code removed[l]} -infinity. */
    private static Scores scoresWithRemoved(int[] removed) {
        double[][] ch = new double[4][96];
        for (int l = 0; l < 4; l++) {
            for (int j = 0; j < 96; j++) {
                ch[l][j] = j < removed[l] ? Double.NEGATIVE_INFINITY : j;
            }
        }
        return new Scores("test", false, StructureGraph.Kind.KV_GROUP, new double[4][4], null, ch, null);
    }

    @Test
    void refusesLayersAndMissingImportance() throws Exception {
        ModelConfig c = RandomModels.write(tmp.resolve("m"), RandomModels.llama().withLayers(4).withHeads(8, 4));
        Scores s = new Scores("test", false, StructureGraph.Kind.KV_GROUP, new double[4][4], null, new double[4][96], null);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Allocation.allocate(StructureGraph.of(c), s, Allocation.Options.of(0.2, Set.of("channels"), "adapt-pruner")));
        assertTrue(e.getMessage().contains("importance"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Allocation.allocate(StructureGraph.of(c), s.withLayers(IMPORTANCE),
                Allocation.Options.of(0.2, Set.of("layers"), "adapt-pruner")));
    }

    /** The streamed statistic equals sum over tokens of 1 - cos(x_in, x_out), from a brute-force forward, as plain loops. */
    @Test
    void layerImportanceIsOneMinusCosineOfLayerInputAndOutput() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(3).withHeads(4, 2));
        long[][] windows = windows(5, 12, 7);
        try (ModelDir md = ModelDir.open(dir)) {
            // 24 tokens per chunk: chunks of 2, 2, 1 sequences
            double[] streamed = LayerImportance.measure(md.config(), md.checkpoint(), Device.cpu(), windows, 24, Progress.NONE);
            Activations bf = new Activations(md.config(), md.checkpoint(), windows);
            for (int l = 0; l < 3; l++) {
                double expected = 0;
                double[][][] in = bf.layerIn.get(l);
                double[][][] out = bf.layerOut.get(l);
                for (int i = 0; i < in.length; i++) {
                    for (int t = 0; t < in[i].length; t++) {
                        double dot = 0;
                        double nin = 0;
                        double nout = 0;
                        for (int k = 0; k < in[i][t].length; k++) {
                            dot += in[i][t][k] * out[i][t][k];
                            nin += in[i][t][k] * in[i][t][k];
                            nout += out[i][t][k] * out[i][t][k];
                        }
                        expected += 1 - dot / Math.sqrt(nin * nout);
                    }
                }
                assertEquals(expected, streamed[l], 1e-4 * Math.max(1, Math.abs(expected)), "layer " + l);
                assertTrue(expected > 0.5, "a random layer changes its input: " + expected);
            }
        }
    }

    /** The pipeline measures the importance and hands it to the allocation, with a criterion that uses no calibration. */
    @Test
    void prunerMeasuresImportanceForAnyCriterion() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(4).withHeads(8, 4));
        Path text = Files.writeString(tmp.resolve("calib.txt"),
                "In the beginning God created the heaven and the earth. And the earth was without form, and void.\n".repeat(30));
        PruneResult r = new Pruner().run(PruneRequest.builder(dir).criterion("magnitude").allocation("adapt-pruner").ratio(0.5)
                .calibration(text).samples(6).seqLen(16).seed(3).planOut(tmp.resolve("plan.json")).build());
        try (ModelDir md = ModelDir.open(dir); NDManager m = NDManager.newBaseManager()) {
            long[][] w = CalibrationData.load(text, md.tokenizer(), 6, 16, 3, null, null).windows();
            Activations bf = new Activations(md.config(), md.checkpoint(), w);
            double[] imp = new double[4];
            for (int l = 0; l < 4; l++) {
                double[][][] in = bf.layerIn.get(l);
                double[][][] out = bf.layerOut.get(l);
                for (int i = 0; i < in.length; i++) {
                    for (int t = 0; t < in[i].length; t++) {
                        double dot = 0;
                        double a = 0;
                        double b = 0;
                        for (int k = 0; k < in[i][t].length; k++) {
                            dot += in[i][t][k] * out[i][t][k];
                            a += in[i][t][k] * in[i][t][k];
                            b += out[i][t][k] * out[i][t][k];
                        }
                        imp[l] += 1 - dot / Math.sqrt(a * b);
                    }
                }
            }
            Scores magnitude = Criteria.create("magnitude", Map.of()).score(ScoringContext.of(md.config(), md.checkpoint(), Device.cpu()));
            PruningPlan expected = Allocation.allocate(StructureGraph.of(md.config()), magnitude.withLayers(imp),
                    Allocation.Options.of(0.5, Set.of("heads", "channels"), "adapt-pruner"));
            assertEquals(expected.layers(), r.plan().layers());
            List<LayerSelection> sel = r.plan().resolve(md.config());
            assertTrue(sel.stream().mapToInt(x -> x.keptChannels().length).distinct().count() > 1, "layers differ: " + r.plan().layers());
            assertEquals("user", r.settings().get("samples").from());
        }
    }

    private static long[][] windows(int n, int t, long seed) {
        java.util.Random r = new java.util.Random(seed);
        long[][] w = new long[n][t];
        for (long[] row : w) {
            for (int j = 0; j < t; j++) {
                row[j] = 3 + r.nextInt(250);
            }
        }
        return w;
    }
}
