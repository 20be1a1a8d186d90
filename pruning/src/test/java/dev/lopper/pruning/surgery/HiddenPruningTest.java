package dev.lopper.pruning.surgery;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelStats;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.PlainLlama;
import dev.lopper.pruning.Reference;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.criteria.MagnitudeCriterion;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.criteria.ScoringContext;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.stream.IntStream;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The hidden-dimension (residual-stream channel) invariants, against {@link PlainLlama}, a plain-loop double-precision
 * forward pass of the DENSE model that never touches surgery, the graph or Lopper's decoder:
 * <ul>
 *   <li>norms kept: the pruned model equals the dense model with the channels dropped from the stream and every
 *       RMSNorm's mean taken over the kept channels;</li>
 *   <li>norms rescaled (sqrt(d / d_kept), eps x d / d_kept): the pruned model equals the dense model with the
 *       channels zeroed (removing = zeroing).</li>
 * </ul>
 */
class HiddenPruningTest {
    static final double TOL = 2e-4;

    @TempDir
    Path tmp;

    /** GQA 8/2 sharded, MHA tied, Qwen2 biases, LLaMA attention_bias (o bias), Qwen3 q/k norms, Phi-3 fused. */
    static Stream<RandomModels.Spec> variants() {
        RandomModels.Spec base = RandomModels.llama().withLayers(3);
        return Stream.of(
                base.withHeads(8, 2).withShards(3),
                base.withHeads(4, 4).withTied(true),
                base.withFamily(Family.QWEN2),
                base.withHeads(4, 1).withQkvBias(true),
                base.withFamily(Family.QWEN3).withHeads(4, 2).withSize(64, 24, 96),
                base.withFamily(Family.PHI3).withHeads(8, 2));
    }

    static int[] randomKept(int d, int removed, long seed) {
        List<Integer> all = new ArrayList<>(IntStream.range(0, d).boxed().toList());
        java.util.Collections.shuffle(all, new Random(seed));
        return all.subList(removed, d).stream().mapToInt(Integer::intValue).sorted().toArray();
    }

    static void assertClose(double[][] want, float[][] got, String what) {
        double scale = 0;
        for (double[] r : want) {
            for (double v : r) {
                scale = Math.max(scale, Math.abs(v));
            }
        }
        for (int t = 0; t < want.length; t++) {
            for (int v = 0; v < want[t].length; v++) {
                assertEquals(want[t][v], got[t][v], TOL * Math.max(1, scale), what + ": position " + t + ", token " + v);
            }
        }
    }

    static float[][] logits(Surgery.Result r, long[] ids) {
        try (LlamaModel m = LlamaModel.load(r.config(), r.tensors(), Device.cpu())) {
            return m.logits(ids);
        }
    }

    /** The plain reference itself: with every channel kept it is the dense model (Lopper's forward, within fp32). */
    @ParameterizedTest
    @MethodSource("variants")
    void plainReferenceIsTheDenseModel(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        long[] ids = Reference.ids(12, spec.vocab());
        try (ModelDir md = ModelDir.open(dir); LlamaModel dense = md.loadModel(Device.cpu())) {
            int d = md.config().hiddenSize();
            assertClose(PlainLlama.logits(md.config(), md.checkpoint(), IntStream.range(0, d).toArray(), PlainLlama.Mode.DROPPED, ids),
                    dense.logits(ids), "dense");
        }
    }

    @ParameterizedTest
    @MethodSource("variants")
    void prunedStreamEqualsDenseModelWithChannelsDroppedAndRmsOverKept(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        long[] ids = Reference.ids(12, spec.vocab());
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            int[] kept = randomKept(c.hiddenSize(), c.hiddenSize() / 4, 7);
            PruningPlan plan = PruningPlan.empty().withHidden(new PruningPlan.HiddenPlan(kept, null, PruningPlan.NORM_KEEP));
            Surgery.Result r = Surgery.apply(c, md.checkpoint(), plan);
            assertEquals(kept.length, r.config().hiddenSize());
            assertEquals(c.rmsNormEps(), r.config().rmsNormEps());
            assertClose(PlainLlama.logits(c, md.checkpoint(), kept, PlainLlama.Mode.DROPPED, ids), logits(r, ids), "dropped");
            assertEquals(ModelStats.parameters(r.config()), r.tensors().names().stream().mapToLong(n -> r.tensors().shape(n).size()).sum(),
                    "parameters of the pruned tensors = the config's count");
        }
    }

    @ParameterizedTest
    @MethodSource("variants")
    void rescaledNormsEqualZeroingTheChannels(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        long[] ids = Reference.ids(12, spec.vocab());
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            int[] kept = randomKept(c.hiddenSize(), c.hiddenSize() / 4, 11);
            Surgery.Result r = Surgery.apply(c, md.checkpoint(),
                    PruningPlan.empty().withHidden(new PruningPlan.HiddenPlan(null, removed(c.hiddenSize(), kept), PruningPlan.NORM_RESCALE)));
            double[][] zeroed = PlainLlama.logits(c, md.checkpoint(), kept, PlainLlama.Mode.ZEROED, ids);
            if (c.family().hasQkNorm()) {
                // Qwen3's q/k norms share rms_norm_eps, which therefore stays: exact only up to eps (the random
                // model's hidden states are O(1), eps 1e-6)
                assertEquals(c.rmsNormEps(), r.config().rmsNormEps());
            } else {
                assertEquals(c.rmsNormEps() * c.hiddenSize() / kept.length, r.config().rmsNormEps(), 1e-18);
            }
            assertClose(zeroed, logits(r, ids), "zeroed");
        }
    }

    /** Heads, KV groups, channels, a removed layer and the stream at once; the plain reference runs the zeroed dense model. */
    @Test
    void hiddenWithHeadsChannelsAndLayersEqualsTheZeroedDenseModel() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.Spec spec = RandomModels.llama().withLayers(3).withHeads(8, 2);
        RandomModels.write(dir, spec);
        long[] ids = Reference.ids(10, spec.vocab());
        try (ModelDir md = ModelDir.open(dir); NDManager m = NDManager.newBaseManager()) {
            ModelConfig c = md.config();
            LayerShape s = c.layer(0);
            List<LayerSelection> sel = List.of(
                    new LayerSelection(0, false, new int[] {1}, new int[] {4, 5, 6, 7}, IntStream.range(0, s.intermediateSize()).filter(i -> i % 3 != 0).toArray()),
                    LayerSelection.dropped(1),
                    new LayerSelection(2, false, new int[] {0, 1}, new int[] {0, 2, 5, 7}, IntStream.range(0, s.intermediateSize()).toArray()));
            int[] kept = randomKept(c.hiddenSize(), 9, 3);
            Surgery.Result r = Surgery.apply(c, md.checkpoint(), sel, kept, true);
            // zero the heads/channels in the dense weights (the graph's sets), then the plain pass zeroes the stream
            var zeroed = Reference.zeroed(c, md.checkpoint(), sel, m);
            double[][] want = PlainLlama.logits(withoutLayer(c, 1), new Renumbered(zeroed, 1), kept, PlainLlama.Mode.ZEROED, ids);
            assertClose(want, logits(r, ids), "combined");
            assertEquals(c.numLayers() - 1, r.config().numLayers());
        }
    }

    @Test
    void savedHiddenPrunedModelReloadsBitIdenticalAndWritesHiddenSize() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.Spec spec = RandomModels.llama().withLayers(2).withHeads(8, 2).withDtype(ai.djl.ndarray.types.DataType.BFLOAT16);
        RandomModels.write(dir, spec);
        long[] ids = Reference.ids(10, spec.vocab());
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            int[] kept = randomKept(c.hiddenSize(), 5, 5);
            for (String norm : new String[] {PruningPlan.NORM_KEEP, PruningPlan.NORM_RESCALE}) {
                PruningPlan plan = PruningPlan.empty().withHidden(new PruningPlan.HiddenPlan(kept, null, norm));
                Surgery.Result r = Surgery.apply(c, md.checkpoint(), plan);
                Path out = tmp.resolve("out-" + norm);
                Surgery.save(r, out, dir, plan);
                try (ModelDir back = ModelDir.open(out); LlamaModel a = LlamaModel.load(r.config(), r.tensors(), Device.cpu());
                     LlamaModel b = back.loadModel(Device.cpu())) {
                    assertEquals(kept.length, back.config().hiddenSize());
                    assertEquals(r.config().rmsNormEps(), back.config().rmsNormEps());
                    float[][] x = a.logits(ids);
                    float[][] y = b.logits(ids);
                    for (int t = 0; t < ids.length; t++) {
                        assertArrayEquals(x[t], y[t], 0f, norm + " position " + t);
                    }
                    // the plan file records the cut and re-applies to the same tensors
                    PruningPlan again = PruningPlan.load(out.resolve(Surgery.PLAN_FILE));
                    assertEquals(plan.hidden(), again.hidden());
                }
            }
        }
    }

    /**
     * The pipeline end to end: --targets hidden (rescaled norms) and --targets sublayers write plans that record the
     * cuts, and --apply-plan re-applies each to the same tensors, bit for bit.
     */
    @Test
    void applyPlanReappliesHiddenAndSublayerCuts() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(4).withHeads(4, 2));
        int d = ModelConfig.load(dir).hiddenSize();
        Path text = tmp.resolve("calib.txt");
        java.nio.file.Files.writeString(text, "In the beginning God created the heaven and the earth. ".repeat(400));
        for (String[] run : new String[][] {{"magnitude", "hidden", "rescale"}, {"block-influence", "sublayers", null}}) {
            Path out = tmp.resolve("out-" + run[1]);
            dev.lopper.pruning.PruneRequest.Builder b = dev.lopper.pruning.PruneRequest.builder(dir).criterion(run[0]).ratio(0.3)
                    .targets(run[1]).hiddenNorm(run[2]).out(out);
            if (!run[0].equals("magnitude")) {
                b.calibration(text).samples(4).seqLen(16);
            }
            dev.lopper.pruning.PruneResult r = new dev.lopper.pruning.Pruner().run(b.build());
            PruningPlan plan = PruningPlan.load(out.resolve(Surgery.PLAN_FILE));
            assertEquals(r.plan().hidden(), plan.hidden());
            assertEquals(List.of(run[1]), plan.targets());
            Path again = tmp.resolve("again-" + run[1]);
            new dev.lopper.pruning.Pruner().run(dev.lopper.pruning.PruneRequest.builder(dir).applyPlan(out.resolve(Surgery.PLAN_FILE))
                    .out(again).build());
            try (ModelDir a = ModelDir.open(out); ModelDir b2 = ModelDir.open(again)) {
                assertEquals(a.config().toJson(), b2.config().toJson());
                long[] ids = Reference.ids(9, a.config().vocabSize());
                try (LlamaModel x = a.loadModel(Device.cpu()); LlamaModel y = b2.loadModel(Device.cpu())) {
                    float[][] fx = x.logits(ids);
                    float[][] fy = y.logits(ids);
                    for (int t = 0; t < ids.length; t++) {
                        assertArrayEquals(fx[t], fy[t], 0f);
                    }
                }
                if (run[1].equals("hidden")) {
                    assertEquals(d - (int) (0.3 * d), a.config().hiddenSize());
                    assertEquals(PruningPlan.NORM_RESCALE, plan.hidden().norm());
                } else {
                    assertTrue(a.config().layers().stream().anyMatch(l -> l.numHeads() == 0 || l.intermediateSize() == 0)
                            || a.config().numLayers() < 4, "some attention or MLP went");
                }
            }
        }
    }

    @Test
    void planRefusesBadHiddenCuts() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(2));
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            int d = c.hiddenSize();
            String e1 = assertThrows(IllegalArgumentException.class, () -> PruningPlan.empty()
                    .withHidden(new PruningPlan.HiddenPlan(new int[] {0, d}, null, null)).validate(c)).getMessage();
            assertTrue(e1.contains("hidden channel " + d + " does not exist"), e1);
            String e2 = assertThrows(IllegalArgumentException.class, () -> PruningPlan.empty()
                    .withHidden(new PruningPlan.HiddenPlan(new int[0], null, null)).validate(c)).getMessage();
            assertTrue(e2.contains("removes every one of the " + d + " hidden channels"), e2);
            String e3 = assertThrows(IllegalArgumentException.class, () -> new PruningPlan.HiddenPlan(null, new int[] {1}, "half")).getMessage();
            assertTrue(e3.contains("'hidden.norm'"), e3);
        }
    }

    /** Magnitude's hidden-channel score: plain loops over every coupled slice, mean of w^2 per channel. */
    @Test
    void magnitudeHiddenScoresMatchPlainLoops() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(2).withHeads(4, 2).withQkvBias(true));
        try (ModelDir md = ModelDir.open(dir); NDManager m = NDManager.newBaseManager()) {
            ModelConfig c = md.config();
            int d = c.hiddenSize();
            double[] sum = new double[d];
            long count = 0;
            List<String> cols = new ArrayList<>(List.of(WeightNames.EMBED, WeightNames.LM_HEAD));
            List<String> rows = new ArrayList<>();
            List<String> vecs = new ArrayList<>(List.of(WeightNames.FINAL_NORM));
            for (int l = 0; l < c.numLayers(); l++) {
                for (String p : new String[] {"q_proj", "k_proj", "v_proj"}) {
                    cols.add(WeightNames.attn(l, p, "weight"));
                }
                cols.add(WeightNames.mlp(l, "gate_proj", "weight"));
                cols.add(WeightNames.mlp(l, "up_proj", "weight"));
                rows.add(WeightNames.mlp(l, "down_proj", "weight"));
                vecs.add(WeightNames.inputNorm(l));
                vecs.add(WeightNames.postAttentionNorm(l));
                if (md.checkpoint().has(WeightNames.attn(l, "o_proj", "bias"))) {
                    vecs.add(WeightNames.attn(l, "o_proj", "bias"));
                }
                rows.add(WeightNames.attn(l, "o_proj", "weight"));
            }
            for (String n : cols) {
                double[][] w = PlainLlama.mat(md.checkpoint(), n, m);
                count += w.length;
                for (double[] r : w) {
                    for (int j = 0; j < d; j++) {
                        sum[j] += r[j] * r[j];
                    }
                }
            }
            for (String n : rows) {
                double[][] w = PlainLlama.mat(md.checkpoint(), n, m);
                count += w[0].length;
                for (int j = 0; j < d; j++) {
                    for (double v : w[j]) {
                        sum[j] += v * v;
                    }
                }
            }
            for (String n : vecs) {
                double[] v = PlainLlama.vec(md.checkpoint(), n, m);
                count += 1;
                for (int j = 0; j < d; j++) {
                    sum[j] += v[j] * v[j];
                }
            }
            Allocation.Options o = Allocation.Options.of(0.25, Set.of("hidden"), "uniform");
            Scores s = new MagnitudeCriterion(2).score(new ScoringContext(c, md.checkpoint(), StructureGraph.of(c), Device.cpu(),
                    null, null, 0, null, null, o, 512, null));
            for (int j = 0; j < d; j++) {
                assertEquals(sum[j] / count, s.hidden()[j], 1e-6 * sum[j] / count, "channel " + j); // fp32 sums
            }
            // allocation: int(0.25 x d) lowest go, the plan records them and the achieved ratio is removed/d of the
            // parameters that have a hidden axis
            PruningPlan plan = Allocation.allocate(StructureGraph.of(c), s, o);
            assertEquals(d - (int) (0.25 * d), plan.hidden().keptChannels().length);
            assertEquals((double) (int) (0.25 * d) / d, plan.result().achievedRatio(), 1e-3);
        }
    }

    private static int[] removed(int d, int[] kept) {
        return Allocation.complement(d, kept);
    }

    /** The config without layer {@code skip}. */
    private static ModelConfig withoutLayer(ModelConfig c, int skip) {
        List<LayerShape> l = new ArrayList<>(c.layers());
        l.remove(skip);
        return c.withLayers(l);
    }

    /** A view of {@code source} without layer {@code skip}, the later layers renumbered (the plain pass reads by name). */
    private record Renumbered(dev.lopper.model.io.TensorSource source, int skip) implements dev.lopper.model.io.TensorSource {
        private String map(String name) {
            int l = WeightNames.layerOf(name);
            if (l < skip) {
                return name;
            }
            return WeightNames.layerPrefix(l + 1) + name.substring(WeightNames.layerPrefix(l).length());
        }

        @Override
        public Set<String> names() {
            throw new UnsupportedOperationException();
        }

        @Override
        public boolean has(String name) {
            return source.has(map(name));
        }

        @Override
        public ai.djl.ndarray.types.Shape shape(String name) {
            return source.shape(map(name));
        }

        @Override
        public ai.djl.ndarray.types.DataType storedType(String name) {
            return source.storedType(map(name));
        }

        @Override
        public ai.djl.ndarray.NDArray load(String name, NDManager manager, ai.djl.ndarray.types.DataType type) {
            return source.load(map(name), manager, type);
        }
    }
}
