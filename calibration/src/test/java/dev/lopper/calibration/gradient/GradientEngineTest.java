package dev.lopper.calibration.gradient;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.calibration.ChannelStats;
import dev.lopper.calibration.ChannelStatsCollector;
import dev.lopper.model.util.Progress;
import dev.lopper.calibration.Tap;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The streamed layer-by-layer backward against a whole-model backward, finite differences in fp64, per-sample
 * squares computed one window at a time, and the bound on resident weights.
 */
class GradientEngineTest {
    @TempDir
    Path tmp;

    static long[][] windows(int n, int t, int vocab, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        long[][] w = new long[n][t];
        for (long[] row : w) {
            for (int j = 0; j < t; j++) {
                row[j] = r.nextInt(vocab);
            }
        }
        return w;
    }

    /** Per tensor name, the engine's statistics copied out as doubles. */
    static final class Collected implements GradientConsumer {
        final Map<String, double[]> sum = new LinkedHashMap<>();
        final Map<String, double[]> sumSq = new LinkedHashMap<>();
        final List<Integer> order = new ArrayList<>();
        int samples = -1;

        @Override
        public void layerDone(dev.lopper.model.LayerWeights w, LayerGradients g) {
            order.add(w.index());
            samples = g.samples();
            for (LayerParam p : g.params()) {
                sum.put(p.tensorName(w.index()), g.gradientSum(p).toType(ai.djl.ndarray.types.DataType.FLOAT64, false).toDoubleArray());
                if (g.hasSquares()) {
                    sumSq.put(p.tensorName(w.index()), g.squaredGradientSum(p).toType(ai.djl.ndarray.types.DataType.FLOAT64, false).toDoubleArray());
                }
            }
        }
    }

    /** max |a - b| / max |b| over a tensor: the relative difference that near-zero entries cannot inflate. */
    static double relDiff(double[] a, double[] b) {
        double diff = 0;
        double scale = 0;
        for (int i = 0; i < a.length; i++) {
            diff = Math.max(diff, Math.abs(a[i] - b[i]));
            scale = Math.max(scale, Math.abs(b[i]));
        }
        return scale == 0 ? diff : diff / scale;
    }

    static double maxRelDiff(Map<String, double[]> got, Map<String, double[]> ref) {
        assertEquals(ref.keySet(), got.keySet());
        double worst = 0;
        for (String k : ref.keySet()) {
            worst = Math.max(worst, relDiff(got.get(k), ref.get(k)));
        }
        return worst;
    }

    private Collected run(Checkpoint ckpt, ModelConfig c, long[][] w, GradientEngine.Options o) {
        Collected got = new Collected();
        new GradientEngine(c, ckpt, Device.cpu()).run(w, got, o);
        return got;
    }

    @Test
    void streamedGradientsEqualWholeModelBackward() throws Exception {
        for (RandomModels.Spec spec : List.of(RandomModels.llama().withLayers(3),
                RandomModels.llama().withFamily(Family.QWEN2).withTied(true).withHeads(4, 1))) {
            Path dir = tmp.resolve(spec.family() + "-" + spec.tied());
            ModelConfig c = RandomModels.write(dir, spec);
            long[][] w = windows(5, 12, spec.vocab(), 7);
            try (Checkpoint ckpt = Checkpoint.open(dir)) {
                WholeModelBackward.Result ref = WholeModelBackward.run(c, ckpt, w, DataType.FLOAT32, true);
                List<String> lines = new ArrayList<>();
                GradientEngine.Options o = GradientEngine.Options.defaults().withChunkTokens(24) // chunks of 2, 2, 1
                        .withProgress(Progress.lines(lines::add))
                        .withHeadBlockBytes(7L * 4 * c.hiddenSize()); // the LM head in blocks of 7 rows, the last ragged
                Collected got = new Collected();
                GradientEngine.Result res = new GradientEngine(c, ckpt, Device.cpu()).run(w, got, o);
                double rel = maxRelDiff(got.sum, ref.gradients());
                dev.lopper.model.testing.TestLog.printf("%s: streamed vs whole-model backward, max rel diff %.2e%n", spec.family(), rel);
                assertTrue(rel <= 1e-4, "max relative difference " + rel);
                assertEquals(ref.loss() / 5, res.meanLoss(), 1e-5);
                assertEquals(5, got.samples);
                assertEquals(2 * c.numLayers(), lines.size(), String.join("\n", lines));
                List<Integer> reverse = new ArrayList<>();
                for (int i = c.numLayers() - 1; i >= 0; i--) {
                    reverse.add(i);
                }
                assertEquals(reverse, got.order, "layers arrive last to first");
            }
        }
    }

    @Test
    void gradientsMatchFiniteDifferencesInDoublePrecision() throws Exception {
        Path dir = tmp.resolve("fd");
        ModelConfig c = RandomModels.write(dir, RandomModels.llama().withQkvBias(true));
        long[][] w = windows(2, 8, 300, 11);
        try (Checkpoint ckpt = Checkpoint.open(dir)) {
            Collected got = run(ckpt, c, w, GradientEngine.Options.defaults());
            SplittableRandom r = new SplittableRandom(5);
            double worst = 0;
            int checked = 0;
            for (Map.Entry<String, double[]> e : got.sum.entrySet()) {
                double[] g = e.getValue();
                int argmax = 0;
                for (int i = 1; i < g.length; i++) {
                    argmax = Math.abs(g[i]) > Math.abs(g[argmax]) ? i : argmax;
                }
                // the largest gradient of every tensor, and a random entry of layer 0's q, gate and down (each entry
                // costs two fp64 whole-model forwards: the default suite keeps this to 29 entries)
                boolean extra = WeightNames.layerOf(e.getKey()) == 0 && e.getKey().matches(".*(q|gate|down)_proj\\.weight");
                int[] entries = extra ? new int[] {argmax, r.nextInt(g.length)} : new int[] {argmax};
                for (int idx : entries) {
                    double h = 1e-4;
                    double up = WholeModelBackward.run(c, perturbed(ckpt, e.getKey(), idx, h), w, DataType.FLOAT64, false).loss();
                    double down = WholeModelBackward.run(c, perturbed(ckpt, e.getKey(), idx, -h), w, DataType.FLOAT64, false).loss();
                    double fd = (up - down) / (2 * h);
                    // relative to the tensor's largest gradient, so an entry near zero is judged on the same scale
                    double err = Math.abs(fd - g[idx]) / Math.abs(g[argmax]);
                    worst = Math.max(worst, err);
                    checked++;
                    assertTrue(err <= 1e-4, e.getKey() + "[" + idx + "]: finite difference " + fd + ", engine " + g[idx]);
                }
            }
            dev.lopper.model.testing.TestLog.printf("finite differences: %d entries, max error / tensor max |g| = %.2e%n", checked, worst);
            assertEquals(13 * 2 + 3, checked, "13 tensors per layer (attention_bias: q/k/v/o biases), 3 extra entries");
        }
    }

    /** {@code source} in fp64 with entry {@code idx} of tensor {@code name} moved by {@code h}. */
    static TensorSource perturbed(TensorSource source, String name, int idx, double h) {
        TensorSource f64 = WholeModelBackward.typed(source, DataType.FLOAT64);
        return new TensorSource() {
            @Override
            public Set<String> names() {
                return f64.names();
            }

            @Override
            public Shape shape(String n) {
                return f64.shape(n);
            }

            @Override
            public DataType storedType(String n) {
                return f64.storedType(n);
            }

            @Override
            public NDArray load(String n, NDManager manager, DataType type) {
                NDArray a = f64.load(n, manager, type);
                if (!n.equals(name)) {
                    return a;
                }
                double[] d = a.toDoubleArray();
                d[idx] += h;
                Shape s = a.getShape();
                a.close();
                return manager.create(d, s);
            }
        };
    }

    @Test
    void perSampleSquaresEqualSquaresOfSeparateBackwards() throws Exception {
        Path dir = tmp.resolve("ps");
        ModelConfig c = RandomModels.write(dir, RandomModels.llama().withLayers(2));
        long[][] w = windows(4, 10, 300, 3);
        try (Checkpoint ckpt = Checkpoint.open(dir)) {
            Map<String, double[]> sum = new HashMap<>();
            Map<String, double[]> sumSq = new HashMap<>();
            for (long[] window : w) {
                Map<String, double[]> g = WholeModelBackward.run(c, ckpt, new long[][] {window}, DataType.FLOAT32, true).gradients();
                for (Map.Entry<String, double[]> e : g.entrySet()) {
                    double[] s = sum.computeIfAbsent(e.getKey(), k -> new double[e.getValue().length]);
                    double[] q = sumSq.computeIfAbsent(e.getKey(), k -> new double[e.getValue().length]);
                    for (int i = 0; i < s.length; i++) {
                        s[i] += e.getValue()[i];
                        q[i] += e.getValue()[i] * e.getValue()[i];
                    }
                }
            }
            GradientEngine.Options o = GradientEngine.Options.defaults().withChunkTokens(20).withPerSample(true);
            Collected mem = run(ckpt, c, w, o);
            double relSum = maxRelDiff(mem.sum, sum);
            double relSq = maxRelDiff(mem.sumSq, sumSq);
            dev.lopper.model.testing.TestLog.printf("per-sample: sum max rel diff %.2e, sum of squares %.2e%n", relSum, relSq);
            assertTrue(relSum <= 1e-4 && relSq <= 1e-4, relSum + " " + relSq);

            Path spill = tmp.resolve("spill");
            Collected disk = run(ckpt, c, w, o.withSpillDir(spill));
            assertEquals(0.0, maxRelDiff(disk.sum, mem.sum), "spilled boundaries are the same bytes");
            assertEquals(0.0, maxRelDiff(disk.sumSq, mem.sumSq));
            try (var files = Files.list(spill)) {
                assertEquals(0, files.count(), "every spilled boundary is deleted once used");
            }
        }
    }

    @Test
    void holdsOneLayersWeightsAtATimeAndReleasesEverything() throws Exception {
        Path dir = tmp.resolve("mem");
        ModelConfig c = RandomModels.write(dir, RandomModels.llama().withLayers(4));
        long[][] w = windows(3, 8, 300, 9);
        try (Checkpoint ckpt = Checkpoint.open(dir)) {
            Counting counting = new Counting(ckpt);
            ChannelStatsCollector acts = new ChannelStatsCollector(Set.of(Tap.DOWN_PROJ_INPUT));
            List<Integer> liveAtCallback = new ArrayList<>();
            new GradientEngine(c, counting, Device.cpu()).run(w, (weights, g) -> liveAtCallback.add(counting.liveLayers()),
                    GradientEngine.Options.defaults().withPerSample(true).withCollectors(List.of(acts)));
            assertEquals(1, counting.maxLiveLayers, "at most one decoder layer's weights resident");
            assertEquals(List.of(1, 1, 1, 1), liveAtCallback);
            assertEquals(0, counting.liveLayers());
            assertTrue(counting.loaded.stream().allMatch(NDArray::isReleased), "every loaded weight released");
            for (int i = 0; i < 4; i++) {
                assertEquals(2, counting.loads.get(WeightNames.attn(i, "q_proj", "weight")), "forward sweep + backward");
            }
            assertEquals(1, counting.loads.get(WeightNames.EMBED));
            // the forward sweep's activation statistics are the dense model's, as in the calibration engine
            ChannelStats s = acts.get(3, Tap.DOWN_PROJ_INPUT);
            assertEquals(3, s.sequences());
            assertFalse(s.sumOfSquares()[0] == 0);
        }
    }

    /** Counts loads and which layers have weights not yet released. */
    static final class Counting implements TensorSource {
        final TensorSource inner;
        final List<NDArray> loaded = new ArrayList<>();
        final List<Integer> layerOf = new ArrayList<>();
        final Map<String, Integer> loads = new HashMap<>();
        int maxLiveLayers;

        Counting(TensorSource inner) {
            this.inner = inner;
        }

        int liveLayers() {
            Set<Integer> live = new java.util.HashSet<>();
            for (int i = 0; i < loaded.size(); i++) {
                if (!loaded.get(i).isReleased() && layerOf.get(i) >= 0) {
                    live.add(layerOf.get(i));
                }
            }
            return live.size();
        }

        @Override
        public Set<String> names() {
            return inner.names();
        }

        @Override
        public Shape shape(String name) {
            return inner.shape(name);
        }

        @Override
        public DataType storedType(String name) {
            return inner.storedType(name);
        }

        @Override
        public NDArray load(String name, NDManager manager, DataType type) {
            NDArray a = inner.load(name, manager, type);
            loaded.add(a);
            layerOf.add(name.startsWith("model.layers.") ? WeightNames.layerOf(name) : -1);
            loads.merge(name, 1, Integer::sum);
            maxLiveLayers = Math.max(maxLiveLayers, liveLayers());
            return a;
        }
    }
}
