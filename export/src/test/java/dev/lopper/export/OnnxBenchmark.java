package dev.lopper.export;

import ai.djl.ndarray.types.DataType;
import ai.onnxruntime.OrtException;
import dev.lopper.model.ModelStats;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Tokens/s and latency of a dense model and its 20% / 50% pruned versions (fewer KV groups and MLP channels in
 * every layer, by slicing) exported to ONNX and run in ONNX Runtime (CPU), all in one run with rounds interleaved
 * so machine load hits every model alike; prints a Markdown report with ratios and file sizes.
 *
 * <p>Usage: {@code OnnxBenchmark OUT_DIR [threads] [rounds] [hidden layers heads intermediate vocab]}.
 * Measures: prefill (batch 1 x {@value #PREFILL} tokens, logits variant) and decode (batch 1, one token on a cache of
 * {@value #PREFILL}, KV variant), each the median over rounds of the mean of several calls.
 */
public final class OnnxBenchmark {
    static final int PREFILL = 128;

    private OnnxBenchmark() {
    }

    record Variant(String name, Path dir, ModelConfig config, Ort logits, Ort kv, long onnxBytes, long kvBytes) {
    }

    public static void main(String[] args) throws Exception {
        Path out = Path.of(args.length > 0 ? args[0] : "target/onnx-bench").toAbsolutePath();
        int threads = args.length > 1 ? Integer.parseInt(args[1]) : 1;
        int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 7;
        int hidden = args.length > 3 ? Integer.parseInt(args[3]) : 512;
        int layers = args.length > 4 ? Integer.parseInt(args[4]) : 8;
        int heads = args.length > 5 ? Integer.parseInt(args[5]) : 8;
        int inter = args.length > 6 ? Integer.parseInt(args[6]) : 1408;
        int vocab = args.length > 7 ? Integer.parseInt(args[7]) : 4096;
        Files.createDirectories(out);
        Path dense = out.resolve("dense-model");
        RandomModels.Spec spec = RandomModels.llama().withLayers(layers).withHeads(heads, heads)
                .withSize(hidden, hidden / heads, inter).withDtype(DataType.FLOAT32);
        spec = new RandomModels.Spec(spec.family(), vocab, spec.hidden(), spec.layers(), spec.heads(), spec.kvHeads(),
                spec.headDim(), spec.intermediate(), spec.tied(), spec.qkvBias(), spec.shards(), spec.dtype(), spec.seed(),
                spec.ropeTheta(), spec.ropeScaling(), spec.slidingWindow());
        RandomModels.write(dense, spec);
        ModelConfig c = ModelConfig.load(dense);

        List<Variant> variants = new ArrayList<>();
        variants.add(variant("dense", dense, out));
        for (double prune : new double[] {0.2, 0.5}) {
            List<LayerShape> shapes = new ArrayList<>();
            for (LayerShape s : c.layers()) {
                int kv = (int) Math.round(s.numKvHeads() * (1 - prune));
                shapes.add(new LayerShape(kv * s.groupSize(), kv, (int) Math.round(s.intermediateSize() * (1 - prune))));
            }
            String name = "pruned-" + Math.round(prune * 100) + "%";
            Path dir = TestModels.slice(dense, shapes, out.resolve(name.replace("%", "") + "-model"));
            variants.add(variant(name, dir, out));
        }
        List<Variant> open = new ArrayList<>();
        for (Variant v : variants) {
            open.add(new Variant(v.name(), v.dir(), v.config(), new Ort(v.dir().resolve("onnx/model.onnx"), threads),
                    new Ort(v.dir().resolve("onnx-kv/model.onnx"), threads), v.onnxBytes(), v.kvBytes()));
        }

        Map<String, double[]> prefill = new HashMap<>();
        Map<String, double[]> decode = new HashMap<>();
        for (Variant v : open) {
            prefill.put(v.name(), new double[rounds]);
            decode.put(v.name(), new double[rounds]);
            timePrefill(v, 2); // warm-up
            timeDecode(v, 5);
        }
        for (int r = 0; r < rounds; r++) {
            for (Variant v : open) {
                prefill.get(v.name())[r] = timePrefill(v, 3);
                decode.get(v.name())[r] = timeDecode(v, 30);
            }
        }

        StringBuilder md = new StringBuilder();
        md.append(String.format(Locale.ROOT, "Model: random LLaMA, hidden %d, %d layers, %d heads (head_dim %d, MHA), intermediate %d, vocab %d, fp32.%n",
                hidden, layers, heads, hidden / heads, inter, vocab));
        md.append(String.format(Locale.ROOT, "ONNX Runtime %s (Java, CPU), intra-op threads %d, %d interleaved rounds, medians. "
                + "Prefill: batch 1 x %d tokens (logits variant). Decode: batch 1, 1 token with a KV cache of %d (onnx-kv).%n%n",
                ai.onnxruntime.OrtEnvironment.getEnvironment().getVersion(), threads, rounds, PREFILL, PREFILL));
        md.append("| model | params | layer params | model.onnx | prefill ms | prefill tok/s | decode ms/token | decode tok/s | prefill speed-up | decode speed-up | param reduction (all / layers) | MAC reduction (prefill / decode) |\n");
        md.append("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        double pd = median(prefill.get("dense"));
        double dd = median(decode.get("dense"));
        long paramsDense = ModelStats.parameters(c);
        long layersDense = layerParams(c);
        for (Variant v : open) {
            double p = median(prefill.get(v.name()));
            double d = median(decode.get(v.name()));
            long params = ModelStats.parameters(v.config());
            long lp = layerParams(v.config());
            md.append(String.format(Locale.ROOT, "| %s | %.2fM | %.2fM | %.1f MiB | %.2f | %.0f | %.3f | %.0f | %.2fx | %.2fx | %.2fx / %.2fx | %.2fx / %.2fx |%n",
                    v.name(), params / 1e6, lp / 1e6, v.onnxBytes() / 1048576.0, p, PREFILL / p * 1000, d, 1000 / d,
                    pd / p, dd / d, (double) paramsDense / params, (double) layersDense / lp,
                    macsPerToken(c, (PREFILL + 1) / 2.0) / macsPerToken(v.config(), (PREFILL + 1) / 2.0),
                    macsPerToken(c, PREFILL + 1) / macsPerToken(v.config(), PREFILL + 1)));
        }
        md.append("\nPer-round timings (ms), prefill / decode:\n\n");
        for (Variant v : open) {
            md.append(String.format(Locale.ROOT, "- %s: %s / %s%n", v.name(), fmt(prefill.get(v.name())), fmt(decode.get(v.name()))));
        }
        System.out.print(md);
        Files.writeString(out.resolve("report.md"), md.toString());
        for (Variant v : open) {
            v.logits().close();
            v.kv().close();
        }
    }

    /**
     * Multiply-accumulates per token: every linear weight once, the LM head, and attention (scores and the weighted
     * sum: 2 x context x heads x head_dim per layer). The embedding lookup and norms are ignored.
     */
    static double macsPerToken(ModelConfig c, double context) {
        double macs = (double) c.vocabSize() * c.hiddenSize();
        for (LayerShape s : c.layers()) {
            long q = (long) s.numHeads() * c.headDim();
            long kv = (long) s.numKvHeads() * c.headDim();
            macs += (double) c.hiddenSize() * (2 * q + 2 * kv) + 3.0 * c.hiddenSize() * s.intermediateSize() + 2 * context * q;
        }
        return macs;
    }

    private static long layerParams(ModelConfig c) {
        return c.layers().stream().mapToLong(s -> ModelStats.layerParameters(c, s)).sum();
    }

    private static Variant variant(String name, Path model, Path out) throws Exception {
        Path dir = out.resolve(name.replace("%", ""));
        Exporter.Result onnx = Exporter.export(model, ExportFormat.ONNX, dir.resolve("onnx"));
        Exporter.Result kv = Exporter.export(model, ExportFormat.ONNX_KV, dir.resolve("onnx-kv"));
        long onnxBytes = Files.size(onnx.dir().resolve("model.onnx"));
        long kvBytes = Files.size(kv.dir().resolve("model.onnx"));
        return new Variant(name, dir, ModelConfig.load(model), null, null, onnxBytes, kvBytes);
    }

    /** Mean ms of {@code n} prefill calls. */
    private static double timePrefill(Variant v, int n) throws OrtException {
        long[][] ids = Reference.ids(1, PREFILL, v.config().vocabSize(), 3);
        long[][] mask = Ort.ones(1, PREFILL);
        long t0 = System.nanoTime();
        for (int i = 0; i < n; i++) {
            v.logits().logits(ids, mask);
        }
        return (System.nanoTime() - t0) / 1e6 / n;
    }

    /** Mean ms of {@code n} single-token decode calls on a cache of PREFILL tokens (zeros: the cost is the same). */
    private static double timeDecode(Variant v, int n) throws OrtException {
        ModelConfig c = v.config();
        Map<String, float[]> cache = new HashMap<>();
        Map<String, long[]> shapes = new HashMap<>();
        for (int i : OnnxExporter.cachedLayers(c)) {
            for (String kind : List.of("key", "value")) {
                int kvh = c.layer(i).numKvHeads();
                cache.put(OnnxExporter.pastName(i, kind), new float[kvh * PREFILL * c.headDim()]);
                shapes.put(OnnxExporter.pastName(i, kind), new long[] {1, kvh, PREFILL, c.headDim()});
            }
        }
        long[][] ids = {{5}};
        long[][] mask = Ort.ones(1, PREFILL + 1);
        long t0 = System.nanoTime();
        for (int i = 0; i < n; i++) {
            v.kv().run(ids, mask, cache, shapes, java.util.Set.of("logits"));
        }
        return (System.nanoTime() - t0) / 1e6 / n;
    }

    private static double median(double[] a) {
        double[] s = a.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    private static String fmt(double[] a) {
        StringBuilder b = new StringBuilder();
        for (double x : a) {
            b.append(b.length() == 0 ? "" : " ").append(String.format(Locale.ROOT, "%.2f", x));
        }
        return b.toString();
    }
}
