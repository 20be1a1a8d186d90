package dev.lopper.pruning.allocation;

import dev.lopper.model.config.Family;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * FLAP's four structures (UL-UM, UL-MM, AL-MM, AL-AM; {@code lib/prune.py::prune_flap}, {@code cal_remove_neuron})
 * against counts and selections worked out by hand from the official rules, in the comments; nothing here runs
 * allocation code to produce an expectation. Configs are built without weights.
 */
class FlapStructuresTest {
    private static final List<String> HC = List.of("heads", "channels");

    /** A LLaMA-family config with identical layers and no weights. */
    static ModelConfig config(int layers, int hidden, int headDim, int heads, int kvHeads, int channels) {
        List<LayerShape> shapes = Collections.nCopies(layers, new LayerShape(heads, kvHeads, channels));
        return new ModelConfig(Family.LLAMA, 32000, hidden, headDim, shapes, 2048, 1e-6, 10000, null, false, false, 0,
                null, null, null);
    }

    /** LLaMA-7B: 32 layers, d = 4096, 32 MHA heads of 128, d_ff = 11008. */
    static ModelConfig llama7b() {
        return config(32, 4096, 128, 32, 32, 11008);
    }

    /** Distinct pseudo-random scores for every unit (the counts below do not depend on them). */
    static Scores random(ModelConfig c, boolean comparable) {
        SplittableRandom r = new SplittableRandom(7);
        int n = c.numLayers();
        double[][] kv = new double[n][], heads = new double[n][], ch = new double[n][];
        for (int l = 0; l < n; l++) {
            kv[l] = r.doubles(c.layer(l).numKvHeads()).toArray();
            heads[l] = r.doubles(c.layer(l).numHeads()).toArray();
            ch[l] = r.doubles(c.layer(l).intermediateSize()).toArray();
        }
        return new Scores("flap", comparable, StructureGraph.Kind.KV_GROUP, kv, heads, ch, null);
    }

    static List<LayerSelection> allocate(ModelConfig c, Scores s, Allocation.Options o) {
        return Allocation.allocate(StructureGraph.of(c), s, o).resolve(c);
    }

    static Allocation.Options options(double ratio, String strategy, Double headRatio, String rounding) {
        return new Allocation.Options(ratio, new java.util.HashSet<>(HC), strategy, null, headRatio, null, 0, 0, rounding);
    }

    // ------------------------------------------------------------------ LLaMA-7B counts

    /**
     * UL-UM at 0.3, official: heads {@code sorted[int(0.3 * 32)]} = sorted[9.6 -> 9], channels
     * {@code sorted[int(11008 * 0.3)]} = sorted[3302.4 -> 3302], keep {@code >=}: 9 heads and 3302 channels go in
     * every layer. The absorbing rule: round(9.6) = 10 heads; target round(0.3 x 202,375,168) = 60,712,550
     * parameters, minus 10 x 4 x 4096 x 128 = 20,971,520, over 3 x 4096 = 12,288 per channel = 3234.1 -> 3234.
     */
    @Test
    void ulUmLlama7bAt03RemovesNineHeadsAnd3302ChannelsPerLayer() {
        ModelConfig c = llama7b();
        Scores s = random(c, true);
        for (LayerSelection sel : allocate(c, s, options(0.3, "uniform", null, null))) {
            assertEquals(32 - 9, sel.keptHeads().length, "layer " + sel.layer());
            assertEquals(11008 - 3302, sel.keptChannels().length, "layer " + sel.layer());
        }
        for (LayerSelection sel : allocate(c, s, options(0.3, "uniform", null, Allocation.Options.ABSORB))) {
            assertEquals(32 - 10, sel.keptHeads().length);
            assertEquals(11008 - 3234, sel.keptChannels().length);
        }
    }

    /**
     * UL-MM at 0.5 with {@code --remove_heads 384} (the ablation script) = head ratio 384 / 1024 = 0.375: per layer
     * 384 // 32 = 12 heads, and {@code cal_remove_neuron} = int((0.5 x 202,375,168 - 4 x 4096 x 12 x 128) / 12,288)
     * = int((101,187,584 - 25,165,824) / 12,288) = int(6186.67) = 6186 channels.
     */
    @Test
    void ulMmLlama7bAt05With384Heads() {
        ModelConfig c = llama7b();
        for (LayerSelection sel : allocate(c, random(c, true), options(0.5, "ul-mm", 384.0 / 1024, null))) {
            assertEquals(32 - 12, sel.keptHeads().length);
            assertEquals(11008 - 6186, sel.keptChannels().length);
        }
    }

    /**
     * AL-MM at 0.5 with {@code --remove_heads 380} (the ablation script) = head ratio 380 / 1024: 380 heads go
     * model-wide, and {@code cal_remove_neuron} = int((32 x 0.5 x 202,375,168 - 4 x 4096 x 380 x 128) / 12,288)
     * = int((3,238,002,688 - 796,917,760) / 12,288) = 198,656 channels model-wide (of 352,256).
     */
    @Test
    void alMmLlama7bAt05With380Heads() {
        ModelConfig c = llama7b();
        List<LayerSelection> sel = allocate(c, random(c, false), options(0.5, "al-mm", 380.0 / 1024, null));
        assertEquals(32 * 32 - 380, sel.stream().mapToInt(x -> x.keptHeads().length).sum());
        assertEquals(32 * 11008 - 198656, sel.stream().mapToInt(x -> x.keptChannels().length).sum());
    }

    // ------------------------------------------------------------------ selections on a small model

    /**
     * 2 layers, hidden 64, 8 heads of 16 in 4 KV groups (group size 2), 96 channels. Parameters: a KV group
     * 2 x 16 x 64 (q rows, o columns of 2 heads) x 2 + 2 x 16 x 64 (k, v rows) = 6144; a query head 2 x 16 x 64
     * = 2048; a channel 3 x 64 = 192; a layer 4 x 6144 + 96 x 192 = 43,008.
     */
    static ModelConfig small() {
        return config(2, 64, 16, 8, 4, 96);
    }

    /** Channel j of layer l scores perm(j) + 100 l, perm(j) = (37 j + 11) mod 96 (a permutation of 0..95). */
    static int perm(int j) {
        return (37 * j + 11) % 96;
    }

    static Scores smallScores(boolean comparable, double[][] kv, double[][] heads) {
        double[][] ch = new double[2][96];
        for (int l = 0; l < 2; l++) {
            for (int j = 0; j < 96; j++) {
                ch[l][j] = perm(j) + 100 * l;
            }
        }
        return new Scores("flap", comparable, StructureGraph.Kind.KV_GROUP, kv, heads, ch, null);
    }

    static final double[][] KV = {{5, 1, 7, 3}, {2, 8, 4, 6}};

    /** Channels kept when those with perm(j) < k go (the k lowest of every layer). */
    static int[] keptAbove(int k) {
        return IntStream.range(0, 96).filter(j -> perm(j) >= k).toArray();
    }

    /**
     * UL-UM at 0.3: int(0.3 x 4) = 1 group (layer 0: group 1, score 1; layer 1: group 0, score 2) and
     * int(0.3 x 96) = int(28.8) = 28 channels. Absorbing: round(1.2) = 1 group; round(0.3 x 43,008) = 12,902
     * minus 6144 = 6758 over 192 = 35.2 -> 35 channels.
     */
    @Test
    void ulUmSelectsTheLowestIndependently() {
        ModelConfig c = small();
        Scores s = smallScores(true, KV, null);
        List<LayerSelection> sel = allocate(c, s, options(0.3, "uniform", null, null));
        assertArrayEquals(new int[] {0, 2, 3}, sel.get(0).keptKvGroups());
        assertArrayEquals(new int[] {0, 1, 4, 5, 6, 7}, sel.get(0).keptHeads());
        assertArrayEquals(new int[] {1, 2, 3}, sel.get(1).keptKvGroups());
        assertArrayEquals(keptAbove(28), sel.get(0).keptChannels());
        assertArrayEquals(keptAbove(28), sel.get(1).keptChannels());
        List<LayerSelection> absorb = allocate(c, s, options(0.3, "uniform", null, Allocation.Options.ABSORB));
        assertArrayEquals(new int[] {0, 2, 3}, absorb.get(0).keptKvGroups());
        assertArrayEquals(keptAbove(35), absorb.get(1).keptChannels());
    }

    /**
     * UL-MM at 0.3 with head ratio 0.5: int(0.5 x 4) = 2 groups per layer (layer 0: groups 1 and 3, scores 1 and
     * 3; layer 1: groups 0 and 2, scores 2 and 4), then int((0.3 x 43,008 - 2 x 6144) / 192) = int(614.4 / 192)
     * = int(3.2) = 3 channels. Without a head ratio (= 0.3): 1 group, int((12,902.4 - 6144) / 192) = int(35.2)
     * = 35 channels.
     */
    @Test
    void ulMmSplitsEachLayersBudgetByTheManualHeadCount() {
        ModelConfig c = small();
        Scores s = smallScores(true, KV, null);
        List<LayerSelection> sel = allocate(c, s, options(0.3, "ul-mm", 0.5, null));
        assertArrayEquals(new int[] {0, 2}, sel.get(0).keptKvGroups());
        assertArrayEquals(new int[] {1, 3}, sel.get(1).keptKvGroups());
        assertArrayEquals(keptAbove(3), sel.get(0).keptChannels());
        assertArrayEquals(keptAbove(3), sel.get(1).keptChannels());
        List<LayerSelection> dflt = allocate(c, s, options(0.3, "ul-mm", null, null));
        assertEquals(3, dflt.get(0).keptKvGroups().length);
        assertArrayEquals(keptAbove(35), dflt.get(1).keptChannels());
    }

    /**
     * UL-MM with query heads as the unit, 0.3, head ratio 0.5: int(0.5 x 2) = 1 head of every group (the lower
     * one); a slot of 4 query heads weighs 4 x 2048 = 8192, so int((12,902.4 - 8192) / 192) = int(24.5) = 24
     * channels.
     */
    @Test
    void ulMmWithQueryHeads() {
        ModelConfig c = small();
        double[][] heads = {{1, 0, 3, 2, 5, 4, 7, 6}, {0, 1, 2, 3, 4, 5, 6, 7}};
        Scores s = smallScores(true, KV, heads);
        List<LayerSelection> sel = allocate(c, s, new Allocation.Options(0.3, new java.util.HashSet<>(HC), "ul-mm",
                StructureGraph.Kind.QUERY_HEAD, 0.5, null, 0, 0));
        assertArrayEquals(new int[] {0, 2, 4, 6}, sel.get(0).keptHeads());
        assertArrayEquals(new int[] {1, 3, 5, 7}, sel.get(1).keptHeads());
        assertArrayEquals(keptAbove(24), sel.get(0).keptChannels());
    }

    /**
     * AL-MM at 0.3 with head ratio 0.25, comparable scores (used as they are): int(0.25 x 8) = 2 groups
     * model-wide, the lowest: layer 0 group 1 (score 1), layer 1 group 0 (score 2). Channels: int((0.3 x 86,016
     * - 2 x 6144) / 192) = int(13,516.8 / 192) = int(70.4) = 70 model-wide. Layer 0 scores j, layer 1 50.5 + j:
     * the 70 lowest are 0..49 of layer 0, then 50, 50.5, 51, 51.5, ..., 59, 59.5 (10 of each layer), so layer 0
     * loses channels 0..59 and layer 1 channels 0..9.
     */
    @Test
    void alMmRemovesFixedCountsModelWide() {
        ModelConfig c = small();
        double[][] ch = new double[2][96];
        for (int j = 0; j < 96; j++) {
            ch[0][j] = j;
            ch[1][j] = 50.5 + j;
        }
        Scores s = new Scores("flap", true, StructureGraph.Kind.KV_GROUP, KV, null, ch, null);
        List<LayerSelection> sel = allocate(c, s, options(0.3, "al-mm", 0.25, null));
        assertArrayEquals(new int[] {0, 2, 3}, sel.get(0).keptKvGroups());
        assertArrayEquals(new int[] {1, 2, 3}, sel.get(1).keptKvGroups());
        assertArrayEquals(IntStream.range(60, 96).toArray(), sel.get(0).keptChannels());
        assertArrayEquals(IntStream.range(10, 96).toArray(), sel.get(1).keptChannels());
    }

    /**
     * AL-MM, head ratio 0.5 = 4 groups model-wide; layer 0's groups score 1..4 and layer 1's 10..40, so all four
     * of layer 0 are the lowest. FLAP would empty layer 0's attention; Lopper keeps its best group (3).
     */
    @Test
    void alMmKeepsTheBestUnitOfAnEmptiedModule() {
        ModelConfig c = small();
        Scores s = smallScores(true, new double[][] {{1, 2, 3, 4}, {10, 20, 30, 40}}, null);
        List<LayerSelection> sel = allocate(c, s, options(0.3, "al-mm", 0.5, null));
        assertArrayEquals(new int[] {3}, sel.get(0).keptKvGroups());
        assertArrayEquals(new int[] {0, 1, 2, 3}, sel.get(1).keptKvGroups());
    }

    /**
     * Non-comparable scores are standardized per layer and module first. Layer 1's scores are layer 0's times 1000
     * (plus 1e6 for channels), so standardized they are the same in both layers (raw, layer 0 would take every
     * cut). Head ratio 0.25 = 2 groups: the two lowest z are group 1 of each layer (raw 1 and 1000; next is group
     * 3 at a clearly higher z). Channels: 70 model-wide = the 35 pairs with perm(j) = 0..34, 35 per layer.
     */
    @Test
    void alMmStandardizesNonComparableScores() {
        ModelConfig c = small();
        double[][] kv = {{5, 1, 7, 3}, {5000, 1000, 7000, 3000}};
        double[][] ch = new double[2][96];
        for (int j = 0; j < 96; j++) {
            ch[0][j] = perm(j);
            ch[1][j] = 1e6 + 1000 * perm(j);
        }
        Scores s = new Scores("wanda-sp", false, StructureGraph.Kind.KV_GROUP, kv, null, ch, null);
        List<LayerSelection> sel = allocate(c, s, options(0.3, "al-mm", 0.25, null));
        assertArrayEquals(new int[] {0, 2, 3}, sel.get(0).keptKvGroups());
        assertArrayEquals(new int[] {0, 2, 3}, sel.get(1).keptKvGroups());
        assertArrayEquals(keptAbove(35), sel.get(0).keptChannels());
        assertArrayEquals(keptAbove(35), sel.get(1).keptChannels());
    }

    @Test
    void manualStructuresNeedHeadsAndChannelsAndNoChannelRatio() {
        ModelConfig c = small();
        Scores s = smallScores(true, KV, null);
        for (String a : List.of("ul-mm", "al-mm")) {
            assertThrows(IllegalArgumentException.class, () -> allocate(c, s, Allocation.Options.of(0.3, java.util.Set.of("channels"), a)));
            assertThrows(IllegalArgumentException.class, () -> allocate(c, s,
                    new Allocation.Options(0.3, new java.util.HashSet<>(HC), a, null, 0.5, 0.2, 0, 0)));
        }
        assertThrows(IllegalArgumentException.class, () -> options(0.3, "uniform", null, "nearest"));
        assertEquals(Arrays.asList("al-mm", "ul-mm"), Allocation.strategies().stream().filter(x -> x.endsWith("-mm")).sorted().toList());
    }
}
