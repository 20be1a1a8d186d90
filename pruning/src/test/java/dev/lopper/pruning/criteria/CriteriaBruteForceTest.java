package dev.lopper.pruning.criteria;

import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.allocation.UniformAllocation;
import dev.lopper.pruning.Reference;
import dev.lopper.pruning.Activations;
import ai.djl.Device;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import java.util.Set;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Each activation-based criterion against its formula computed directly from fully materialized activations
 * ({@link dev.lopper.pruning.Activations}): scores within 1e-5 relative, and the same plans under every allocation.
 */
public class CriteriaBruteForceTest {
    @TempDir
    Path tmp;

    static Stream<RandomModels.Spec> models() {
        // 4 KV groups of 2 heads: standardizing only 2 units per layer would give exact +-0.707 ties everywhere,
        // which adaptive allocation then breaks by rounding noise
        RandomModels.Spec base = RandomModels.llama().withLayers(3).withHeads(8, 4);
        return Stream.of(base, base.withHeads(4, 4), base.withHeads(4, 1).withQkvBias(true),
                base.withFamily(Family.QWEN3).withSize(64, 24, 96), base.withFamily(Family.PHI3));
    }

    public static long[][] windows(int n, int t, int vocab, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        long[][] w = new long[n][t];
        for (long[] row : w) {
            for (int j = 0; j < t; j++) {
                row[j] = 3 + r.nextInt(vocab - 3);
            }
        }
        return w;
    }

    public static ScoringContext context(ModelDir md, long[][] windows) {
        return new ScoringContext(md.config(), md.checkpoint(), StructureGraph.of(md.config()), Device.cpu(), windows,
                null, 0, m -> { });
    }

    @ParameterizedTest
    @MethodSource("models")
    void wandaSpMatchesBruteForce(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        long[][] w = windows(6, 16, spec.vocab(), 11);
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            Scores got = new WandaSpCriterion().withChunkTokens(32).score(context(md, w));
            Activations a = new Activations(c, md.checkpoint(), w);
            int n = c.numLayers();
            double[][] kv = new double[n][], heads = new double[n][], channels = new double[n][];
            for (int l = 0; l < n; l++) {
                LayerShape s = c.layer(l);
                double[] attn = wanda(Activations.weight(c, md.checkpoint(), l, "o"), a.oIn.get(l));
                heads[l] = Activations.sumRuns(attn, c.headDim());
                kv[l] = Activations.sumRuns(attn, c.headDim() * s.groupSize());
                channels[l] = wanda(Activations.weight(c, md.checkpoint(), l, "down"), a.downIn.get(l));
            }
            Scores want = new Scores(WandaSpCriterion.NAME, false, StructureGraph.Kind.KV_GROUP, kv, heads, channels, null);
            assertScores(want, got, 1e-5, 0);
            assertSamePlans(c, want, got, List.of("uniform", "adaptive"));
        }
    }

    /**
     * The official order: layer l is scored on the activations of the model whose layers before l are already
     * pruned (brute force: removed columns zeroed in a TensorMap, whole model re-run for every layer), then pruned
     * with uniform allocation.
     */
    @ParameterizedTest
    @MethodSource("models")
    void sequentialWandaSpMatchesBruteForce(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        long[][] w = windows(6, 16, spec.vocab(), 21);
        try (ModelDir md = ModelDir.open(dir); ai.djl.ndarray.NDManager m = ai.djl.ndarray.NDManager.newBaseManager()) {
            ModelConfig c = md.config();
            Allocation.Options o = Allocation.Options.of(0.5, Set.of("heads", "channels"), "uniform");
            Scores got = new WandaSpCriterion().sequential(o).withChunkTokens(32).score(context(md, w));
            Scores dense = new WandaSpCriterion().withChunkTokens(32).score(context(md, w));
            int n = c.numLayers();
            double[][] kv = new double[n][], heads = new double[n][], channels = new double[n][];
            dev.lopper.model.io.TensorMap current = new dev.lopper.model.io.TensorMap(md.checkpoint());
            for (int l = 0; l < n; l++) {
                LayerShape s = c.layer(l);
                Activations a = new Activations(c, current, w);
                double[] attn = wanda(Activations.weight(c, current, l, "o"), a.oIn.get(l));
                heads[l] = Activations.sumRuns(attn, c.headDim());
                kv[l] = Activations.sumRuns(attn, c.headDim() * s.groupSize());
                channels[l] = wanda(Activations.weight(c, current, l, "down"), a.downIn.get(l));
                double[][] fk = new double[n][], fh = new double[n][], fc = new double[n][];
                for (int j = 0; j < n; j++) {
                    fk[j] = j == l ? kv[l] : new double[c.layer(j).numKvHeads()];
                    fh[j] = j == l ? heads[l] : new double[c.layer(j).numHeads()];
                    fc[j] = j == l ? channels[l] : new double[c.layer(j).intermediateSize()];
                }
                LayerSelection sel = new UniformAllocation().select(StructureGraph.of(c),
                        new Scores("x", false, StructureGraph.Kind.KV_GROUP, fk, fh, fc, null), o).get(l);
                java.util.List<LayerSelection> only = new java.util.ArrayList<>();
                for (int j = 0; j < n; j++) {
                    only.add(j == l ? sel : LayerSelection.whole(j, c.layer(j)));
                }
                // zero layer l's removed structures (graph sets, independent of the criterion's masking code)
                dev.lopper.model.io.TensorMap z = Reference.zeroed(c, current, only, m);
                for (String name : z.names()) {
                    if (dev.lopper.model.WeightNames.layerOf(name) == l) {
                        current.put(name, z.load(name, m));
                    }
                }
            }
            Scores want = new Scores(WandaSpCriterion.NAME, false, StructureGraph.Kind.KV_GROUP, kv, heads, channels, null);
            assertScores(want, got, 1e-5, 0);
            assertSamePlans(c, want, got, List.of("uniform"));
            // the first layer sees the dense input either way; later layers see pruned inputs
            assertClose(dense.channels()[0], got.channels()[0], 1e-9, null, "layer 0 is scored on dense inputs");
            assertTrue(Math.abs(dense.channels()[n - 1][0] - got.channels()[n - 1][0]) > 1e-6 * Math.abs(dense.channels()[n - 1][0]),
                    "the last layer's scores change when earlier layers are pruned");
        }
    }

    /** (1/d) sum_i |W[i,j]| * sqrt(sum_t x_j^2 / N). */
    static double[] wanda(double[][] w, double[][][] x) {
        double[] abs = Activations.colAbsMean(w);
        double[] sc = Activations.scalerRow(x);
        double[] out = new double[abs.length];
        for (int j = 0; j < out.length; j++) {
            out[j] = abs[j] * Math.sqrt(sc[j]);
        }
        return out;
    }

    @ParameterizedTest
    @MethodSource("models")
    void flapMatchesBruteForce(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        long[][] w = windows(6, 16, spec.vocab(), 12);
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            FlapCriterion flap = new FlapCriterion();
            Scores got = flap.withChunkTokens(48).score(context(md, w));
            Activations a = new Activations(c, md.checkpoint(), w);
            int n = c.numLayers();
            double[][] kv = new double[n][], heads = new double[n][], channels = new double[n][];
            for (int l = 0; l < n; l++) {
                LayerShape s = c.layer(l);
                double[][] fo = Activations.flap(a.oIn.get(l));
                double[] colO = Activations.colSq(Activations.weight(c, md.checkpoint(), l, "o"));
                double[] attn = new double[colO.length];
                for (int j = 0; j < attn.length; j++) {
                    attn[j] = Math.pow(fo[1][j] * colO[j], 2); // WIFV, squared for attention
                }
                double[] z = Activations.zscore(attn);
                heads[l] = Activations.meanRuns(z, c.headDim());
                kv[l] = Activations.meanRuns(z, c.headDim() * s.groupSize());
                double[][] fd = Activations.flap(a.downIn.get(l));
                double[] colD = Activations.colSq(Activations.weight(c, md.checkpoint(), l, "down"));
                double[] mlp = new double[colD.length];
                for (int j = 0; j < mlp.length; j++) {
                    mlp[j] = fd[1][j] * colD[j];
                }
                channels[l] = Activations.zscore(mlp);
                // the means kept for bias compensation are FLAP's baseline_inp
                assertClose(fo[0], flap.compensation().oProjInputMean(l), 1e-5, rms(a.oIn.get(l)), "o_proj mean " + l);
                assertClose(fd[0], flap.compensation().downProjInputMean(l), 1e-5, rms(a.downIn.get(l)), "down_proj mean " + l);
            }
            Scores want = new Scores(FlapCriterion.NAME, true, StructureGraph.Kind.KV_GROUP, kv, heads, channels, null);
            // z-scores are O(1) and cross zero: 1e-5 relative to max(|z|, 1)
            assertScores(want, got, 1e-5, 1);
            assertSamePlans(c, want, got, List.of("uniform", "global", "adaptive", "ul-mm", "al-mm"));
        }
    }

    @ParameterizedTest
    @MethodSource("models")
    void cfspMatchesBruteForce(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        long[][] w = windows(5, 16, spec.vocab(), 13);
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            Scores got = new CfspCriterion().withChunkTokens(32).score(context(md, w));
            Activations a = new Activations(c, md.checkpoint(), w);
            int n = c.numLayers();
            double[][] kv = new double[n][], heads = new double[n][], channels = new double[n][];
            double[] layers = new double[n];
            for (int l = 0; l < n; l++) {
                LayerShape s = c.layer(l);
                double[] attn = cfsp(a.oIn.get(l), Activations.weight(c, md.checkpoint(), l, "o"),
                        Activations.weight(c, md.checkpoint(), l, "q"), null);
                heads[l] = Activations.sumRuns(attn, c.headDim());
                kv[l] = Activations.sumRuns(attn, c.headDim() * s.groupSize());
                channels[l] = cfsp(a.downIn.get(l), Activations.weight(c, md.checkpoint(), l, "down"),
                        Activations.weight(c, md.checkpoint(), l, "up"), Activations.weight(c, md.checkpoint(), l, "gate"));
                double[][][] in = a.layerIn.get(l), out = a.layerOut.get(l);
                for (int i = 0; i < in.length; i++) {
                    for (int t = 0; t < in[i].length; t++) {
                        double dot = 0, p = 0, q = 0;
                        for (int k = 0; k < in[i][t].length; k++) {
                            dot += in[i][t][k] * out[i][t][k];
                            p += in[i][t][k] * in[i][t][k];
                            q += out[i][t][k] * out[i][t][k];
                        }
                        layers[l] += Math.acos(dot / Math.sqrt(p * q)) / Math.PI;
                    }
                }
                layers[l] *= 131072.0 / (5 * 16);
                // the as-coded fine score ranks MLP channels exactly as the activation norm ||X_j||
                assertArrayEquals(order(Activations.scalerRow(a.downIn.get(l))), order(got.channels()[l]), "CFSP ranking = ||X|| ranking");
            }
            Scores want = new Scores(CfspCriterion.NAME, false, StructureGraph.Kind.KV_GROUP, kv, heads, channels, layers);
            assertScores(want, got, 1e-5, 0);
            assertClose(layers, got.layers(), 1e-5, null, "block importance");
            assertSamePlans(c, want, got, List.of("uniform", "adaptive"));
        }
    }

    /** three_w_one_wa with a = b = c = 1, term by term. */
    static double[] cfsp(double[][][] x, double[][] out, double[][] in1, double[][] in2) {
        double[] s = Activations.scalerRow(x);
        for (int j = 0; j < s.length; j++) {
            s[j] = Math.sqrt(s[j]);
        }
        int d = out.length;
        int ch = s.length;
        double[] score = new double[ch];
        for (int j = 0; j < ch; j++) {
            double sumUnder = 0, sum1 = 0, sum2 = 0;
            for (int i = 0; i < d; i++) {
                sumUnder += Math.abs(out[i][j]) * s[j];
                sum1 += Math.abs(in1[j][i]);
                sum2 += in2 == null ? 0 : Math.abs(in2[j][i]);
            }
            double acc = 0;
            for (int i = 0; i < d; i++) {
                double m = Math.abs(out[i][j]) * s[j] / sumUnder + Math.abs(in1[j][i]) / sum1
                        + (in2 == null ? 0 : Math.abs(in2[j][i]) / sum2);
                acc += m * s[j];
            }
            score[j] = acc / d;
        }
        return score;
    }

    static int[] order(double[] v) {
        return java.util.stream.IntStream.range(0, v.length).boxed()
                .sorted((p, q) -> Double.compare(v[p], v[q])).mapToInt(Integer::intValue).toArray();
    }

    static double[] rms(double[][][] x) {
        double[] sq = Activations.scalerRow(x);
        double[] out = new double[sq.length];
        for (int j = 0; j < sq.length; j++) {
            out[j] = Math.sqrt(sq[j] / x[0].length);
        }
        return out;
    }

    static void assertScores(Scores want, Scores got, double rel, double floor) {
        for (StructureGraph.Kind k : new StructureGraph.Kind[] {StructureGraph.Kind.KV_GROUP, StructureGraph.Kind.QUERY_HEAD,
                StructureGraph.Kind.MLP_CHANNEL}) {
            double[][] a = want.of(k), b = got.of(k);
            assertEquals(a.length, b.length);
            for (int l = 0; l < a.length; l++) {
                double[] scale = new double[a[l].length];
                java.util.Arrays.fill(scale, floor);
                assertClose(a[l], b[l], rel, floor > 0 ? scale : null, k + " layer " + l);
            }
        }
    }

    /** |want - got| <= rel * max(|want|, scale). */
    static void assertClose(double[] want, double[] got, double rel, double[] scale, String what) {
        assertEquals(want.length, got.length, what);
        for (int i = 0; i < want.length; i++) {
            double tol = rel * Math.max(Math.abs(want[i]), scale == null ? 0 : scale[i]) + 1e-300;
            assertTrue(Math.abs(want[i] - got[i]) <= tol, what + "[" + i + "]: want " + want[i] + ", got " + got[i]);
        }
    }

    /**
     * Score fidelity seen through allocation: brute-force and criterion scores give the same plans. Both sides run
     * the same allocation code, so this does not test allocation itself; FlapStructuresTest and AllocationTest
     * check the strategies against hand-computed expectations.
     */
    static void assertSamePlans(ModelConfig c, Scores want, Scores got, List<String> allocations) {
        StructureGraph g = StructureGraph.of(c);
        for (String alloc : allocations) {
            for (double ratio : new double[] {0.2, 0.5}) {
                Allocation.Options o = Allocation.Options.of(ratio, Set.of("heads", "channels"), alloc);
                PruningPlan a = Allocation.allocate(g, want, o);
                PruningPlan b = Allocation.allocate(g, got, o);
                assertEquals(a.toJsonString(), b.toJsonString(), alloc + " " + ratio);
                assertTrue(a.result().achievedRatio() > 0, alloc + " " + ratio + " removes something");
            }
        }
    }
}
