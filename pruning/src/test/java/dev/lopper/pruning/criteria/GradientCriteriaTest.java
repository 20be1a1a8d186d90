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
                    Scores want = llmPruner(c, ref, crit.taylor(), crit, false);
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

    /**
     * GQA fold: against the official stride order (llama3.py through hf_llama_pruner.py's view(n_rep, -1).sum(0)), with
     * grouping sum, channels, query heads and layers agree; a KV group's score differs by exactly the q/o salience of
     * its own query heads (h r .. h r + r - 1, HF's repeat_kv) minus that of the stride's {h, h + n_kv, ...}; k/v
     * enter both alike. On MQA (one KV head) both orders are the same, so the scores are equal.
     */
    @Test
    void gqaFoldDiffersFromTheOfficialStrideOnlyInTheQueryHeadsItSums() throws Exception {
        int m = 0;
        for (RandomModels.Spec spec : MODELS) {
            Path dir = tmp.resolve("f" + m++);
            RandomModels.write(dir, spec);
            long[][] w = CriteriaBruteForceTest.windows(4, 12, spec.vocab(), 5);
            try (ModelDir md = ModelDir.open(dir)) {
                ModelConfig c = md.config();
                GradientReference ref = new GradientReference(c, md.checkpoint(), w);
                LlmPrunerCriterion crit = new LlmPrunerCriterion(Taylor.PARAM_FIRST, Grouping.SUM);
                Scores got = crit.score(CriteriaBruteForceTest.context(md, w));
                Scores official = llmPruner(c, ref, Taylor.PARAM_FIRST, crit, true);
                String what = spec.family() + " " + c.layer(0).numHeads() + "/" + c.layer(0).numKvHeads();
                double moved = 0;
                for (int l = 0; l < c.numLayers(); l++) {
                    near(official.channels()[l], got.channels()[l], what + " channels");
                    near(official.queryHeads()[l], got.queryHeads()[l], what + " query heads");
                    LayerShape s = c.layer(l);
                    int r = s.groupSize(), hd = c.headDim();
                    double[] q = localNorm(ref, WeightNames.attn(l, "q_proj", "weight"), Taylor.PARAM_FIRST, false);
                    double[] o = localNorm(ref, WeightNames.attn(l, "o_proj", "weight"), Taylor.PARAM_FIRST, true);
                    double[] qo = new double[s.numHeads()]; // the q/o part of each query head's sum
                    for (int ch = 0; ch < q.length; ch++) {
                        qo[ch / hd] += q[ch] + o[ch];
                    }
                    double[] expected = official.kvGroups()[l].clone();
                    for (int h = 0; h < s.numKvHeads(); h++) {
                        for (int j = 0; j < r; j++) {
                            expected[h] += qo[h * r + j] - qo[j * s.numKvHeads() + h];
                        }
                        moved = Math.max(moved, Math.abs(expected[h] - official.kvGroups()[l][h]));
                    }
                    near(expected, got.kvGroups()[l], what + " KV groups = official + (own heads - stride heads)");
                    if (s.numKvHeads() == 1) {
                        near(official.kvGroups()[l], got.kvGroups()[l], what + " MQA: both folds agree");
                    }
                }
                if (c.layer(0).numKvHeads() > 1) {
                    assertTrue(moved > 0, what + ": the stride fold sums other query heads on GQA");
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

    /**
     * The layers block-wise pruning leaves whole, hand-computed: the README's and paper's 4..30 of LLaMA-7B's 32
     * (first 4, last 2), scaled by round(4 L / 32) and round(2 L / 32) with halves up; argparse's 3..31 (3 and 1).
     */
    @Test
    void keptLayersFollowThePaperRangeScaledToTheDepth() {
        // L = 32: 4 / 2 (--block_*_layer_start 4 --block_*_layer_end 30); 8: 1.0 -> 1, 0.5 -> 1; 6: 0.75 -> 1, 0.375 -> 0;
        // 80 (LLaMA-2-70B): 10 / 5; 40 (13B): 5.0 -> 5, 2.5 -> 3
        int[][] want = {{32, 4, 2}, {8, 1, 1}, {6, 1, 0}, {80, 10, 5}, {40, 5, 3}};
        for (int[] w : want) {
            assertEquals(w[1], LlmPrunerCriterion.keepFirst(LlmPrunerCriterion.Layers.PAPER, w[0]), "first, L = " + w[0]);
            assertEquals(w[2], LlmPrunerCriterion.keepLast(LlmPrunerCriterion.Layers.PAPER, w[0]), "last, L = " + w[0]);
            assertEquals(3, LlmPrunerCriterion.keepFirst(LlmPrunerCriterion.Layers.ARGPARSE, w[0]));
            assertEquals(1, LlmPrunerCriterion.keepLast(LlmPrunerCriterion.Layers.ARGPARSE, w[0]));
        }
        Defaults d = Criteria.create("llm-pruner", Map.of()).defaults();
        assertEquals(4, d.keepFirst());
        assertEquals(2, d.keepLast());
        assertThrows(IllegalArgumentException.class, () -> Criteria.create("llm-pruner", Map.of("layers", "all")));
    }

    /**
     * Block-wise defaults through the Pruner on an 8-layer model: layers 1..6 pruned (first and last kept), --taylor
     * param_first (hf_prune.py's argparse default), 10 x 64 windows; each pruned layer loses n - int(n (1 - 0.5)) of
     * its units: KV groups in runs of head_dim channels, (4 x 16 - int(64 x 0.5)) // 16 = 2 of 4, and 96 - int(48.0) =
     * 48 of 96 channels. {@code layers argparse}: 3..6 pruned.
     */
    @Test
    void blockWiseDefaultsKeepThePapersLayers() throws Exception {
        Path dir = tmp.resolve("eight");
        RandomModels.write(dir, RandomModels.llama().withLayers(8).withHeads(8, 4));
        Path text = Files.writeString(tmp.resolve("calib.txt"), "And God said, Let there be light: and there was light.\n".repeat(100));
        for (String layers : new String[] {null, "argparse"}) {
            PruneRequest.Builder b = PruneRequest.builder(dir).criterion("llm-pruner").ratio(0.5).calibration(text)
                    .planOut(tmp.resolve("plan.json")).overwrite(true);
            if (layers != null) {
                b.option("layers", layers);
            }
            PruneResult r = new Pruner().run(b.build());
            int first = layers == null ? 1 : 3;
            for (LayerSelection s : r.selections()) {
                boolean kept = s.layer() < first || s.layer() == 7;
                assertEquals(kept ? 4 : 2, s.keptKvGroups().length, "layer " + s.layer());
                assertEquals(kept ? 96 : 48, s.keptChannels().length, "layer " + s.layer());
            }
            assertEquals(first, r.settings().get("keep_first").value());
            assertEquals(1, r.settings().get("keep_last").value());
            assertEquals("llm-pruner", r.settings().get("counting").value());
            assertEquals(10, r.plan().calibration().samples());
            assertEquals(64, r.plan().calibration().seqLen());
            assertEquals("param_first", r.plan().criterionOptions().get("taylor").asText());
            assertEquals(layers == null ? "paper" : "argparse", r.plan().criterionOptions().get("layers").asText());
        }
    }

    /**
     * prune_gblm's order: layer l's Wanda term comes from the model whose layers before l are already pruned (brute
     * force: the whole model re-run per layer with the removed units' weights zeroed by the graph's sets), its gradient
     * term from gradient_computation.py's dense model; layer l is then cut by uniform allocation of its scores alone.
     */
    @Test
    void sequentialGblmMatchesTheOfficialOrder() throws Exception {
        RandomModels.Spec spec = MODELS.get(0);
        Path dir = tmp.resolve("seq");
        RandomModels.write(dir, spec);
        long[][] w = CriteriaBruteForceTest.windows(4, 12, spec.vocab(), 6);
        try (ModelDir md = ModelDir.open(dir); ai.djl.ndarray.NDManager m = ai.djl.ndarray.NDManager.newBaseManager()) {
            ModelConfig c = md.config();
            int n = c.numLayers();
            dev.lopper.pruning.allocation.Allocation.Options o = dev.lopper.pruning.allocation.Allocation.Options.of(0.5,
                    Set.of("heads", "channels"), "uniform");
            ScoringContext ctx = new ScoringContext(c, md.checkpoint(), StructureGraph.of(c), ai.djl.Device.cpu(), w, null, 0,
                    x -> { }, null, o, 512, null);
            GblmCriterion gblm = new GblmCriterion(100);
            Scores got = gblm.score(ctx);
            assertEquals("sequential (official)", gblm.options().get("order").asText());
            Scores dense = new GblmCriterion(100).score(CriteriaBruteForceTest.context(md, w));
            GradientReference grads = new GradientReference(c, md.checkpoint(), w); // the dense model's gradients
            double[][] kv = new double[n][], heads = new double[n][], channels = new double[n][];
            double[] layers = new double[n];
            dev.lopper.model.io.TensorMap current = new dev.lopper.model.io.TensorMap(md.checkpoint());
            for (int l = 0; l < n; l++) {
                GradientReference acts = new GradientReference(c, current, w); // activations of the model pruned so far
                Scores layer = graphSums(c, grads, (t, i, j) -> {
                    double sq = 0;
                    for (Map<String, double[]> g : grads.perWindow) {
                        sq += Math.pow(100 * g.get(t)[i], 2);
                    }
                    double scalerRow = acts.squares.get(WeightNames.layerOf(t) + "/" + tap(t))[j] / w.length;
                    double absW = Math.abs(grads.weights.get(t)[i]); // layer l itself is still dense when scored
                    return absW * Math.sqrt(scalerRow) + absW * Math.sqrt(sq);
                });
                kv[l] = layer.kvGroups()[l];
                heads[l] = layer.queryHeads()[l];
                channels[l] = layer.channels()[l];
                layers[l] = layer.layers()[l];
                double[][] fk = new double[n][], fh = new double[n][], fc = new double[n][];
                for (int j = 0; j < n; j++) {
                    fk[j] = j == l ? kv[l] : new double[c.layer(j).numKvHeads()];
                    fh[j] = j == l ? heads[l] : new double[c.layer(j).numHeads()];
                    fc[j] = j == l ? channels[l] : new double[c.layer(j).intermediateSize()];
                }
                LayerSelection sel = new dev.lopper.pruning.allocation.UniformAllocation().select(StructureGraph.of(c),
                        new Scores("x", false, StructureGraph.Kind.KV_GROUP, fk, fh, fc, null), o).get(l);
                List<LayerSelection> only = new java.util.ArrayList<>();
                for (int j = 0; j < n; j++) {
                    only.add(j == l ? sel : LayerSelection.whole(j, c.layer(j)));
                }
                dev.lopper.model.io.TensorMap z = dev.lopper.pruning.Reference.zeroed(c, current, only, m);
                for (String name : z.names()) {
                    if (WeightNames.layerOf(name) == l) {
                        current.put(name, z.load(name, m));
                    }
                }
            }
            Scores want = new Scores("ref", false, StructureGraph.Kind.KV_GROUP, kv, heads, channels, layers);
            assertNear(want, got, "sequential gblm");
            near(dense.channels()[0], got.channels()[0], "layer 0 sees the dense input either way");
            assertTrue(Math.abs(dense.channels()[n - 1][0] - got.channels()[n - 1][0]) > 1e-6 * Math.abs(dense.channels()[n - 1][0]),
                    "the last layer's Wanda term changes when earlier layers are pruned");
        }
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
     * The official group flow: each linear's local_norm, q/o folded onto a KV channel, stacked, reduced element-wise
     * by the grouping strategy, summed over head_dim (consecutive_groups). {@code stride} false: each query head onto
     * the KV head it reads (HF's contiguous repeat_kv layout, Lopper's); true: as hf_llama_pruner.py's
     * {@code imp.view(len(imp) // min_imp_size, min_imp_size).sum(0)} folds q_proj's rows and o_proj's columns,
     * query head {@code j} onto KV head {@code j mod n_kv}.
     */
    static Scores llmPruner(ModelConfig c, GradientReference ref, Taylor taylor, LlmPrunerCriterion crit, boolean stride) {
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
                int to = stride ? head % s.numKvHeads() : head / r;
                for (int d = 0; d < hd; d++) {
                    qf[to * hd + d] += q[head * hd + d];
                    of[to * hd + d] += o[head * hd + d];
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
