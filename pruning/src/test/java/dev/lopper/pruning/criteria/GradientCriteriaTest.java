package dev.lopper.pruning.criteria;

import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.PruneResult;
import dev.lopper.pruning.Pruner;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.criteria.LlmPrunerCriterion.Grouping;
import dev.lopper.pruning.criteria.LlmPrunerCriterion.Taylor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * LLM-Pruner and GBLM scores against the official formulas written out here as plain loops over the gradients of an
 * independent whole-model backward per window ({@link GradientReference}), for every Taylor type and grouping
 * strategy, on GQA and on MQA with q/k/v biases; the block-wise defaults and the family check through the Pruner.
 */
class GradientCriteriaTest {
    @TempDir
    Path tmp;

    static final List<RandomModels.Spec> MODELS = List.of(RandomModels.llama().withLayers(3).withHeads(8, 4),
            RandomModels.llama().withLayers(2).withFamily(Family.QWEN2).withHeads(4, 1));

    @Test
    void llmPrunerMatchesTheOfficialFormulas() throws Exception {
        List<LlmPrunerCriterion> variants = List.of(
                new LlmPrunerCriterion(Taylor.PARAM_FIRST, Grouping.SUM), new LlmPrunerCriterion(Taylor.PARAM_FIRST, Grouping.MEAN),
                new LlmPrunerCriterion(Taylor.PARAM_FIRST, Grouping.MAX), new LlmPrunerCriterion(Taylor.PARAM_FIRST, Grouping.PROD),
                new LlmPrunerCriterion(Taylor.PARAM_SECOND, Grouping.SUM), new LlmPrunerCriterion(Taylor.PARAM_MIX, Grouping.SUM),
                new LlmPrunerCriterion(Taylor.VECTORIZE, Grouping.SUM), new LlmPrunerCriterion(Taylor.VECTORIZE, Grouping.MAX));
        int m = 0;
        for (RandomModels.Spec spec : MODELS) {
            Path dir = tmp.resolve("m" + m++);
            RandomModels.write(dir, spec);
            long[][] w = CriteriaBruteForceTest.windows(4, 12, spec.vocab(), 5);
            try (ModelDir md = ModelDir.open(dir)) {
                ModelConfig c = md.config();
                GradientReference ref = new GradientReference(c, md.checkpoint(), w);
                for (LlmPrunerCriterion crit : variants) {
                    Scores got = crit.score(CriteriaBruteForceTest.context(md, w));
                    Scores want = llmPruner(c, ref, crit.taylor(), crit);
                    String what = spec.family() + " " + crit.options();
                    assertNear(want, got, what);
                    if (crit.grouping() == Grouping.SUM && crit.taylor() != Taylor.VECTORIZE) {
                        // with sum, a structure's score is the sum of |s| over every weight it removes (the graph's view;
                        // its layer sums cover the linears only, LLM-Pruner's layer score also the norms)
                        Map<String, double[]> sal = new java.util.HashMap<>();
                        Scores graph = graphSums(c, ref, (t, i, j) -> Math.abs(sal.computeIfAbsent(t, x -> salience(ref, x, crit.taylor()))[i]));
                        assertNear(new Scores("ref", true, StructureGraph.Kind.KV_GROUP, graph.kvGroups(), graph.queryHeads(),
                                graph.channels(), got.layers()), got, what + " (graph)");
                    }
                }
            }
        }
    }

    @Test
    void gblmMatchesTheOfficialFormula() throws Exception {
        int m = 0;
        for (RandomModels.Spec spec : MODELS) {
            Path dir = tmp.resolve("g" + m++);
            RandomModels.write(dir, spec);
            long[][] w = CriteriaBruteForceTest.windows(4, 12, spec.vocab(), 6);
            try (ModelDir md = ModelDir.open(dir)) {
                ModelConfig c = md.config();
                GradientReference ref = new GradientReference(c, md.checkpoint(), w);
                Scores got = new GblmCriterion(100).score(CriteriaBruteForceTest.context(md, w));
                // gradient_computation.py: l2 = sqrt(sum_n (100 g_n)^2); prune_gblm: |W| sqrt(scaler_row) + |W| l2
                Scores want = graphSums(c, ref, (t, i, j) -> {
                    double sq = 0; // gradients_l2 += (grad * scale) ** 2
                    for (Map<String, double[]> g : ref.perWindow) {
                        sq += Math.pow(100 * g.get(t)[i], 2);
                    }
                    double scalerRow = ref.squares.get(WeightNames.layerOf(t) + "/" + tap(t))[j] / w.length;
                    double absW = Math.abs(ref.weights.get(t)[i]);
                    return absW * Math.sqrt(scalerRow) + absW * Math.sqrt(sq);
                });
                assertNear(want, got, spec.family() + " gblm");
            }
        }
    }

    /** Block-wise defaults: layers [3, n-1) are pruned, the first 3 and the last stay whole; whole KV groups go. */
    @Test
    void blockWiseDefaultsKeepTheFirstThreeAndTheLastLayer() throws Exception {
        Path dir = tmp.resolve("six");
        RandomModels.write(dir, RandomModels.llama().withLayers(6).withHeads(8, 4));
        Path text = Files.writeString(tmp.resolve("calib.txt"), "And God said, Let there be light: and there was light.\n".repeat(100));
        PruneResult r = new Pruner().run(PruneRequest.builder(dir).criterion("llm-pruner").ratio(0.5)
                .calibration(text).planOut(tmp.resolve("plan.json")).build());
        for (LayerSelection s : r.selections()) {
            boolean kept = s.layer() < 3 || s.layer() == 5;
            assertEquals(kept, s.keptKvGroups().length == 4 && s.keptChannels().length == 96, "layer " + s.layer());
        }
        assertEquals(3, r.settings().get("keep_first").value());
        assertEquals(1, r.settings().get("keep_last").value());
        assertEquals(10, r.plan().calibration().samples());
        assertEquals(64, r.plan().calibration().seqLen());
        assertEquals("param_mix", r.plan().criterionOptions().get("taylor").asText());
    }

    /** Qwen3's q/k norms are outside the backward pass: refused, naming the family, before the data is read. */
    @Test
    void unsupportedFamilyFailsBeforeAnyWork() throws Exception {
        Path dir = tmp.resolve("qwen3");
        RandomModels.write(dir, RandomModels.llama().withFamily(Family.QWEN3));
        for (String method : List.of("llm-pruner", "gblm")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new Pruner().run(PruneRequest.builder(dir)
                    .criterion(method).ratio(0.2).calibration(tmp.resolve("no-such-file.txt")).planOut(tmp.resolve("p.json")).build()));
            assertTrue(e.getMessage().contains("qwen3"), e.getMessage());
        }
    }

    /** An element's score: tensor name, flat index, input column. */
    interface ElementScore {
        double of(String tensor, int index, int column);
    }

    /** Per structure of the graph, the sum of {@code f} over the weights (not biases) it removes; layers: all linears. */
    static Scores graphSums(ModelConfig c, GradientReference ref, ElementScore f) {
        StructureGraph g = StructureGraph.of(c);
        int n = c.numLayers();
        double[][][] out = new double[3][n][];
        StructureGraph.Kind[] kinds = {StructureGraph.Kind.KV_GROUP, StructureGraph.Kind.QUERY_HEAD, StructureGraph.Kind.MLP_CHANNEL};
        double[] layers = new double[n];
        for (int l = 0; l < n; l++) {
            for (int k = 0; k < 3; k++) {
                StructureGraph.StructureSet set = g.set(kinds[k], l);
                out[k][l] = new double[set.count()];
                for (StructureGraph.Member mem : set.members()) {
                    if (mem.tensor().endsWith(".bias")) {
                        continue;
                    }
                    long[] shape = ref.shapes.get(mem.tensor());
                    for (int u = 0; u < set.count(); u++) {
                        for (long a = mem.start(u); a < mem.end(u); a++) {
                            for (long b = 0; b < (mem.axis() == 0 ? shape[1] : shape[0]); b++) {
                                int i = (int) (mem.axis() == 0 ? a * shape[1] + b : b * shape[1] + a);
                                out[k][l][u] += f.of(mem.tensor(), i, (int) (i % shape[1]));
                            }
                        }
                    }
                }
            }
            for (String t : linears(l)) {
                for (int i = 0; i < ref.weights.get(t).length; i++) {
                    layers[l] += f.of(t, i, (int) (i % ref.shapes.get(t)[1]));
                }
            }
        }
        return new Scores("ref", true, StructureGraph.Kind.KV_GROUP, out[0], out[1], out[2], layers);
    }

    static List<String> linears(int l) {
        return List.of(WeightNames.attn(l, "q_proj", "weight"), WeightNames.attn(l, "k_proj", "weight"), WeightNames.attn(l, "v_proj", "weight"),
                WeightNames.attn(l, "o_proj", "weight"), WeightNames.mlp(l, "gate_proj", "weight"), WeightNames.mlp(l, "up_proj", "weight"),
                WeightNames.mlp(l, "down_proj", "weight"));
    }

    static String tap(String tensor) {
        return tensor.contains("o_proj") ? "o" : tensor.contains("down_proj") ? "down"
                : tensor.contains("gate_proj") || tensor.contains("up_proj") ? "mlp" : "attn";
    }

    /** hf_llama_pruner.py TaylorImportance: the salience of every element of {@code tensor}. */
    static double[] salience(GradientReference ref, String tensor, Taylor taylor) {
        double[] w = ref.weights.get(tensor);
        double[] grad = ref.meanGradient(tensor);
        double[] acc = ref.meanSquaredGradient(tensor);
        double[] s = new double[w.length];
        for (int i = 0; i < w.length; i++) {
            s[i] = switch (taylor) {
                case PARAM_FIRST, VECTORIZE -> w[i] * grad[i];
                case PARAM_SECOND -> w[i] * acc[i] * w[i];
                case PARAM_MIX -> w[i] * grad[i] - 0.5 * w[i] * acc[i] * w[i];
            };
        }
        return s;
    }

    /** local_norm of a linear: per out-channel (rows) or in-channel (columns), sum |s| or, vectorize, |sum s|. */
    static double[] localNorm(GradientReference ref, String tensor, Taylor taylor, boolean columns) {
        double[] s = salience(ref, tensor, taylor);
        long[] shape = ref.shapes.get(tensor);
        int rows = (int) shape[0], cols = (int) shape[1];
        double[] out = new double[columns ? cols : rows];
        double[] signed = new double[out.length];
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < cols; j++) {
                int ch = columns ? j : i;
                out[ch] += Math.abs(s[i * cols + j]);
                signed[ch] += s[i * cols + j];
            }
        }
        if (taylor == Taylor.VECTORIZE) {
            for (int k = 0; k < out.length; k++) {
                out[k] = Math.abs(signed[k]);
            }
        }
        return out;
    }

    /**
     * The official group flow: each linear's local_norm, q/o folded onto the KV channel they read (HF's contiguous
     * layout), stacked, reduced element-wise by the grouping strategy, summed over head_dim (consecutive_groups).
     */
    static Scores llmPruner(ModelConfig c, GradientReference ref, Taylor taylor, LlmPrunerCriterion crit) {
        Reducer reducer = x -> reduce(crit.grouping(), x);
        int n = c.numLayers();
        int hd = c.headDim();
        double[][] kv = new double[n][], heads = new double[n][], channels = new double[n][];
        double[] layers = new double[n];
        for (int l = 0; l < n; l++) {
            LayerShape s = c.layer(l);
            int r = s.groupSize();
            double[] q = localNorm(ref, WeightNames.attn(l, "q_proj", "weight"), taylor, false);
            double[] k = localNorm(ref, WeightNames.attn(l, "k_proj", "weight"), taylor, false);
            double[] v = localNorm(ref, WeightNames.attn(l, "v_proj", "weight"), taylor, false);
            double[] o = localNorm(ref, WeightNames.attn(l, "o_proj", "weight"), taylor, true);
            double[] gate = localNorm(ref, WeightNames.mlp(l, "gate_proj", "weight"), taylor, false);
            double[] up = localNorm(ref, WeightNames.mlp(l, "up_proj", "weight"), taylor, false);
            double[] down = localNorm(ref, WeightNames.mlp(l, "down_proj", "weight"), taylor, true);
            double[] qf = new double[k.length], of = new double[k.length];
            for (int head = 0; head < s.numHeads(); head++) {
                for (int d = 0; d < hd; d++) {
                    qf[(head / r) * hd + d] += q[head * hd + d];
                    of[(head / r) * hd + d] += o[head * hd + d];
                }
            }
            kv[l] = new double[s.numKvHeads()];
            for (int ch = 0; ch < k.length; ch++) {
                kv[l][ch / hd] += reducer.reduce(qf[ch], k[ch], v[ch], of[ch]);
            }
            heads[l] = new double[s.numHeads()];
            for (int ch = 0; ch < q.length; ch++) {
                heads[l][ch / hd] += reducer.reduce(q[ch], o[ch]);
            }
            channels[l] = new double[s.intermediateSize()];
            for (int ch = 0; ch < gate.length; ch++) {
                channels[l][ch] = reducer.reduce(gate[ch], up[ch], down[ch]);
            }
            // a layer: every parameter tensor's total (norms and biases included), reduced like a group
            java.util.List<Double> totals = new java.util.ArrayList<>();
            for (String t : ref.weights.keySet()) {
                if (WeightNames.layerOf(t) == l) {
                    double[] sal = salience(ref, t, taylor);
                    double abs = 0, sum = 0;
                    for (double x : sal) {
                        abs += Math.abs(x);
                        sum += x;
                    }
                    totals.add(taylor == Taylor.VECTORIZE ? Math.abs(sum) : abs);
                }
            }
            layers[l] = reducer.reduce(totals.stream().mapToDouble(Double::doubleValue).toArray());
        }
        return new Scores("ref", true, StructureGraph.Kind.KV_GROUP, kv, heads, channels, layers);
    }

    interface Reducer {
        double reduce(double... x);
    }

    /** TaylorImportance._reduce over the stacked vectors (dim 0): sum, mean, max, prod. */
    static double reduce(Grouping g, double... x) {
        java.util.stream.DoubleStream d = java.util.Arrays.stream(x);
        return switch (g) {
            case SUM -> d.sum();
            case MEAN -> d.average().orElseThrow();
            case MAX -> d.max().orElseThrow();
            case PROD -> d.reduce(1, (a, b) -> a * b);
        };
    }

    /** Every score within 1e-4 of the largest of its layer and kind (fp32 gradients, different summation orders). */
    static void assertNear(Scores want, Scores got, String what) {
        for (StructureGraph.Kind k : Set.of(StructureGraph.Kind.KV_GROUP, StructureGraph.Kind.QUERY_HEAD, StructureGraph.Kind.MLP_CHANNEL)) {
            for (int l = 0; l < want.of(k).length; l++) {
                near(want.of(k)[l], got.of(k)[l], what + " " + k + " layer " + l);
            }
        }
        near(want.layers(), got.layers(), what + " layers");
    }

    static void near(double[] want, double[] got, String what) {
        assertEquals(want.length, got.length, what);
        double scale = 0;
        for (double x : want) {
            scale = Math.max(scale, Math.abs(x));
        }
        assertTrue(scale > 0, what + " all zero");
        for (int i = 0; i < want.length; i++) {
            assertTrue(Math.abs(want[i] - got[i]) <= 1e-4 * scale, what + "[" + i + "]: want " + want[i] + ", got " + got[i]);
        }
    }
}
