package dev.lopper.pruning.criteria;

import ai.djl.Device;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.PlainLlama;
import dev.lopper.pruning.Reference;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The depth criteria (block influence, layer loss, angular distance) against {@link PlainLlama}'s plain-loop stream
 * of the dense model: the statistics recomputed from the papers' formulas by hand, never through {@code DepthPass}.
 */
class DepthCriteriaTest {
    @TempDir
    Path tmp;

    ModelDir md;
    ModelConfig c;
    long[][] windows;
    PlainLlama.Trace[] traces;

    @BeforeEach
    void model() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(4).withHeads(4, 2));
        md = ModelDir.open(dir);
        c = md.config();
        windows = new long[5][];
        for (int i = 0; i < windows.length; i++) {
            long[] ids = Reference.ids(9 + 0, c.vocabSize());
            for (int j = 0; j < ids.length; j++) {
                ids[j] = (ids[j] * (i + 3) + i) % c.vocabSize();
            }
            windows[i] = ids;
        }
        traces = new PlainLlama.Trace[windows.length];
        for (int i = 0; i < windows.length; i++) {
            traces[i] = PlainLlama.trace(c, md.checkpoint(), all(), PlainLlama.Mode.DROPPED, windows[i], -1, null);
        }
    }

    @org.junit.jupiter.api.AfterEach
    void close() {
        md.close();
    }

    int[] all() {
        return IntStream.range(0, c.hiddenSize()).toArray();
    }

    ScoringContext ctx(Set<String> targets, double ratio) {
        Allocation.Options o = Allocation.Options.of(ratio, targets, "uniform");
        return new ScoringContext(c, md.checkpoint(), StructureGraph.of(c), Device.cpu(), windows, null, 0, null, null, o, 18, null);
    }

    static double cos(double[] a, double[] b) {
        double d = 0, na = 0, nb = 0;
        for (int i = 0; i < a.length; i++) {
            d += a[i] * b[i];
            na += a[i] * a[i];
            nb += b[i] * b[i];
        }
        return d / Math.sqrt(na * nb);
    }

    /** ShortGPT: sum over every token of 1 - cos(x_l, x_l+1); sublayers across attention and across MLP. */
    @Test
    void blockInfluenceIsTheSumOfOneMinusCosine() {
        Scores s = new BlockInfluenceCriterion().score(ctx(Set.of("sublayers"), 0.25));
        for (int l = 0; l < c.numLayers(); l++) {
            double bi = 0, attn = 0, mlp = 0;
            for (PlainLlama.Trace t : traces) {
                for (int p = 0; p < windows[0].length; p++) {
                    bi += 1 - cos(t.stream()[l][p], t.stream()[l + 1][p]);
                    attn += 1 - cos(t.stream()[l][p], t.mid()[l][p]);
                    mlp += 1 - cos(t.mid()[l][p], t.stream()[l + 1][p]);
                }
            }
            assertEquals(bi, s.layers()[l], 1e-4 * bi + 1e-6, "layer " + l);
            assertEquals(attn, s.sublayers()[l][0], 1e-4 * attn + 1e-6, "attention " + l);
            assertEquals(mlp, s.sublayers()[l][1], 1e-4 * mlp + 1e-6, "mlp " + l);
        }
    }

    /** Minitron: mean next-token cross-entropy with the layer (attention, MLP) dropped minus the dense model's. */
    @Test
    void layerLossIsTheLossIncreaseWhenDropped() {
        Scores s = new LayerLossCriterion().score(ctx(Set.of("sublayers"), 0.25));
        double base = loss(-1, null);
        for (int l = 0; l < c.numLayers(); l++) {
            assertEquals(loss(l, PlainLlama.Drop.LAYER) - base, s.layers()[l], 2e-4, "layer " + l);
            assertEquals(loss(l, PlainLlama.Drop.ATTENTION) - base, s.sublayers()[l][0], 2e-4, "attention " + l);
            assertEquals(loss(l, PlainLlama.Drop.MLP) - base, s.sublayers()[l][1], 2e-4, "mlp " + l);
        }
    }

    double loss(int layer, PlainLlama.Drop drop) {
        double sum = 0;
        int n = 0;
        for (long[] w : windows) {
            double[][] logits = PlainLlama.trace(c, md.checkpoint(), all(), PlainLlama.Mode.DROPPED, w, layer, drop).logits();
            for (int p = 0; p + 1 < w.length; p++) {
                double max = Double.NEGATIVE_INFINITY;
                for (double v : logits[p]) {
                    max = Math.max(max, v);
                }
                double z = 0;
                for (double v : logits[p]) {
                    z += Math.exp(v - max);
                }
                sum += -(logits[p][(int) w[p + 1]] - max - Math.log(z));
                n++;
            }
        }
        return sum / n;
    }

    /** Gromov et al.: mean over windows of arccos(cos(x^l_T, x^(l+n)_T))/pi at the last token; the best block goes. */
    @Test
    void angularDistanceScoresTheBestBlockAndAllocationRemovesIt() {
        double ratio = 0.5; // 2 of 4 layers
        Scores s = new AngularCriterion().score(ctx(Set.of("layers"), ratio));
        int n = 2;
        int last = windows[0].length - 1;
        double[] block = new double[c.numLayers() - n + 1];
        for (int l = 0; l < block.length; l++) {
            for (PlainLlama.Trace t : traces) {
                double cs = Math.max(-1, Math.min(1, cos(t.stream()[l][last], t.stream()[l + n][last])));
                block[l] += Math.acos(cs) / Math.PI / traces.length;
            }
        }
        int best = 0;
        for (int l = 0; l < block.length; l++) {
            best = block[l] < block[best] ? l : best;
        }
        for (int j = 0; j < c.numLayers(); j++) {
            double want = Double.POSITIVE_INFINITY;
            for (int l = Math.max(0, j - n + 1); l <= Math.min(j, block.length - 1); l++) {
                want = Math.min(want, block[l]);
            }
            assertEquals(want, s.layers()[j], 1e-5, "layer " + j);
        }
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), s, Allocation.Options.of(ratio, Set.of("layers"), "uniform"));
        assertEquals(List.of(best, best + 1), plan.removedLayers());
        // sublayers: one attention or one MLP, last token
        for (int l = 0; l < c.numLayers(); l++) {
            double a = 0;
            for (PlainLlama.Trace t : traces) {
                a += Math.acos(Math.max(-1, Math.min(1, cos(t.stream()[l][last], t.mid()[l][last])))) / Math.PI / traces.length;
            }
            assertEquals(a, s.sublayers()[l][0], 1e-5, "attention " + l);
        }
    }

    /** Sublayer allocation by hand: lowest scores first while the removed parameters stay within the budget. */
    @Test
    void sublayerAllocationRemovesTheLowestAttentionsAndMlps() {
        int n = c.numLayers();
        double[][] sub = new double[n][2];
        for (int l = 0; l < n; l++) {
            sub[l][0] = 10 + l;
            sub[l][1] = 20 + l;
        }
        sub[2][1] = 1; // layer 2's MLP is least important, then every attention
        sub[2][0] = 2; // and then layer 2's attention: layer 2 goes whole
        Scores s = DepthCriterion.scores("hand", new double[n], sub);
        long layer = dev.lopper.model.ModelStats.layerParameters(c, c.layer(0));
        long attn = layer - dev.lopper.model.ModelStats.layerParameters(c, new dev.lopper.model.config.LayerShape(0, 0, c.layer(0).intermediateSize()));
        long mlp = layer - dev.lopper.model.ModelStats.layerParameters(c, new dev.lopper.model.config.LayerShape(c.layer(0).numHeads(), c.layer(0).numKvHeads(), 0));
        // budget: MLP of 2, attention of 2, attention of 0 (each within half a unit of the budget)
        double ratio = (mlp + 2.0 * attn) / (n * layer);
        PruningPlan plan = Allocation.allocate(StructureGraph.of(c), s, Allocation.Options.of(ratio, Set.of("sublayers"), "uniform"));
        assertEquals(List.of(2), plan.removedLayers());
        List<LayerSelection> sel = plan.resolve(c);
        assertEquals(0, sel.get(0).keptHeads().length, "layer 0 keeps its MLP alone");
        assertEquals(c.layer(0).intermediateSize(), sel.get(0).keptChannels().length);
        assertTrue(plan.allowsEmptyModules());
        assertEquals(List.of("sublayers"), plan.targets());
        // the plan file records it and re-applies to the same model
        PruningPlan again = PruningPlan.parse(plan.toJson(), Path.of("plan.json"));
        assertEquals(sel, again.resolve(c));
        String err = assertThrows(IllegalArgumentException.class, () -> Allocation.allocate(StructureGraph.of(c), s,
                Allocation.Options.of(0.2, Set.of("sublayers", "heads"), "uniform"))).getMessage();
        assertTrue(err.contains("cannot be combined"), err);
    }

    /** A pruned model without layer 1's attention and layer 2's MLP equals the plain stream with those left out. */
    @Test
    void sublayerSurgeryEqualsDroppingTheSublayer() {
        List<LayerSelection> sel = new java.util.ArrayList<>();
        for (int l = 0; l < c.numLayers(); l++) {
            sel.add(LayerSelection.whole(l, c.layer(l)));
        }
        sel.set(1, new LayerSelection(1, false, new int[0], new int[0], LayerSelection.range(c.layer(1).intermediateSize())));
        Surgery.Result r = Surgery.apply(c, md.checkpoint(), sel);
        assertEquals(0, r.config().layer(1).numHeads());
        try (LlamaModel m = LlamaModel.load(r.config(), r.tensors(), Device.cpu())) {
            float[][] got = m.logits(windows[0]);
            double[][] want = PlainLlama.trace(c, md.checkpoint(), all(), PlainLlama.Mode.DROPPED, windows[0], 1, PlainLlama.Drop.ATTENTION).logits();
            for (int p = 0; p < want.length; p++) {
                for (int v = 0; v < want[p].length; v++) {
                    assertEquals(want[p][v], got[p][v], 2e-4 * Math.max(1, Math.abs(want[p][v])), "position " + p);
                }
            }
        }
    }

    @Test
    void depthCriteriaRefuseWidthTargets() {
        String e = assertThrows(IllegalArgumentException.class, () -> new BlockInfluenceCriterion()
                .check(Allocation.Options.of(0.2, Set.of("heads"), "uniform"))).getMessage();
        assertTrue(e.contains("scores layers and sublayers only"), e);
        assertArrayEquals(new String[0], new String[0]);
    }
}
