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
 * <p>Usage: {@code OnnxBenchmark OUT_DIR [threads] [rounds] [hidden layers heads intermediate vocab]}, or
 * {@code OnnxBenchmark OUT_DIR threads rounds NAME=MODEL_DIR...} to time given models (the first is the baseline)
 * instead of a random one and its slices; either way {@code OUT_DIR/report.json} holds the medians (ms) by name.
 * Measures: prefill (batch 1 x {@value #PREFILL} tokens, logits variant) and decode (batch 1, one token on a cache of
 * {@value #PREFILL}, KV variant), each the median over rounds of the mean of several calls.
 */
public final class OnnxBenchmark {
    static final int PREFILL = 128;

    /**
     * With one intra-op thread ONNX Runtime runs every node on the calling thread, so that thread's CPU time is the
     * model's compute time, without the time other processes on a shared machine take away (wall time varied 2-3x
     * between rounds on the 2-core development machine). Set -Dlopper.bench.clock=wall for wall time.
     */
    private static boolean cpuClock;
    private static final java.lang.management.ThreadMXBean THREADS = java.lang.management.ManagementFactory.getThreadMXBean();

    private OnnxBenchmark() {
    }

    private static long now() {
        return cpuClock ? THREADS.getCurrentThreadCpuTime() : System.nanoTime();
    }

    record Variant(String name, Path dir, ModelConfig config, Ort logits, Ort kv, long onnxBytes, long ptBytes) {
    }

    public static void main(String[] args) throws Exception {
        Path out = Path.of(args.length > 0 ? args[0] : "target/onnx-bench").toAbsolutePath();
        int threads = args.length > 1 ? Integer.parseInt(args[1]) : 1;
        int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 7;
        cpuClock = threads == 1 && !"wall".equals(System.getProperty("lopper.bench.clock"));
        Files.createDirectories(out);
        List<Variant> variants = new ArrayList<>();
        String title;
        if (args.length > 3 && args[3].contains("=")) {
            for (String a : Arrays.copyOfRange(args, 3, args.length)) {
                String[] kv = a.split("=", 2);
                variants.add(variant(kv[0], Path.of(kv[1]), out));
            }
            title = "Models: " + String.join(", ", Arrays.copyOfRange(args, 3, args.length)) + ".";
        } else {
            title = randomModels(args, out, variants);
        }
        ModelConfig c = variants.get(0).config();
        List<Variant> open = new ArrayList<>();
        for (Variant v : variants) {
            open.add(new Variant(v.name(), v.dir(), v.config(), new Ort(v.dir().resolve("onnx/model.onnx"), threads),
                    new Ort(v.dir().resolve("onnx-kv/model.onnx"), threads), v.onnxBytes(), v.ptBytes()));
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
        md.append(title).append('\n');
        md.append(String.format(Locale.ROOT, "ONNX Runtime %s (Java, CPU), intra-op threads %d, %s, %d interleaved rounds, medians. "
                + "Prefill: batch 1 x %d tokens (logits variant). Decode: batch 1, 1 token with a KV cache of %d (onnx-kv).%n%n",
                ai.onnxruntime.OrtEnvironment.getEnvironment().getVersion(), threads,
                cpuClock ? "times are the calling thread's CPU time" : "wall-clock times", rounds, PREFILL, PREFILL));
        md.append("| model | intermediate | params | layer params | model.onnx | model.pt | prefill ms | prefill tok/s | decode ms/token | decode tok/s | prefill speed-up | decode speed-up | param reduction (all / layers) | MAC reduction (prefill / decode) |\n");
        md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        double pd = median(prefill.get(open.get(0).name()));
        double dd = median(decode.get(open.get(0).name()));
        long paramsDense = ModelStats.parameters(c);
        long layersDense = layerParams(c);
        for (Variant v : open) {
            double p = median(prefill.get(v.name()));
            double d = median(decode.get(v.name()));
            long params = ModelStats.parameters(v.config());
            long lp = layerParams(v.config());
            md.append(String.format(Locale.ROOT, "| %s | %d | %.2fM | %.2fM | %.1f MiB | %.1f MiB | %.2f | %.0f | %.3f | %.0f | %.2fx | %.2fx | %.2fx / %.2fx | %.2fx / %.2fx |%n",
                    v.name(), v.config().layer(0).intermediateSize(), params / 1e6, lp / 1e6, v.onnxBytes() / 1048576.0, v.ptBytes() / 1048576.0, p, PREFILL / p * 1000, d, 1000 / d,
                    pd / p, dd / d, (double) paramsDense / params, (double) layersDense / lp,
                    macsPerToken(c, (PREFILL + 1) / 2.0) / macsPerToken(v.config(), (PREFILL + 1) / 2.0),
                    macsPerToken(c, PREFILL + 1) / macsPerToken(v.config(), PREFILL + 1)));
        }
        md.append("\nPer-round timings (ms), prefill / decode:\n\n");
        for (Variant v : open) {
            md.append(String.format(Locale.ROOT, "- %s: %s / %s%n", v.name(), fmt(prefill.get(v.name())), fmt(decode.get(v.name()))));
        }
        if (Boolean.getBoolean("lopper.bench.profile")) {
            md.append("\nWhere decode time goes (ONNX Runtime profiler, 50 single-token steps, microseconds per step by op type):\n\n");
            md.append(profile(open, threads, out));
        }
        System.out.print(md);
        Files.writeString(out.resolve("report.md"), md.toString());
        com.fasterxml.jackson.databind.node.ObjectNode json = new com.fasterxml.jackson.databind.ObjectMapper().createObjectNode();
        json.put("runtime", "ONNX Runtime " + ai.onnxruntime.OrtEnvironment.getEnvironment().getVersion());
        json.put("clock", cpuClock ? "thread cpu" : "wall");
        for (Variant v : open) {
            json.putObject(v.name()).put("prefill_ms", median(prefill.get(v.name()))).put("decode_ms", median(decode.get(v.name())));
        }
        Files.writeString(out.resolve("report.json"), json.toPrettyString());
        for (Variant v : open) {
            v.logits().close();
            v.kv().close();
        }
    }

    /** The default models: a random dense LLaMA and its 20% / 50% slices (plain and 64-aligned); returns the title. */
    private static String randomModels(String[] args, Path out, List<Variant> variants) throws Exception {
        int hidden = args.length > 3 ? Integer.parseInt(args[3]) : 512;
        int layers = args.length > 4 ? Integer.parseInt(args[4]) : 8;
        int heads = args.length > 5 ? Integer.parseInt(args[5]) : 8;
        int inter = args.length > 6 ? Integer.parseInt(args[6]) : 1408;
        int vocab = args.length > 7 ? Integer.parseInt(args[7]) : 4096;
        Path dense = out.resolve("dense-model");
        RandomModels.Spec spec = RandomModels.llama().withLayers(layers).withHeads(heads, heads)
                .withSize(hidden, hidden / heads, inter).withDtype(DataType.FLOAT32);
        spec = new RandomModels.Spec(spec.family(), vocab, spec.hidden(), spec.layers(), spec.heads(), spec.kvHeads(),
                spec.headDim(), spec.intermediate(), spec.tied(), spec.qkvBias(), spec.shards(), spec.dtype(), spec.seed(),
                spec.ropeTheta(), spec.ropeScaling(), spec.slidingWindow());
        RandomModels.write(dense, spec);
        ModelConfig c = ModelConfig.load(dense);

        variants.add(variant("dense", dense, out));
        for (double prune : new double[] {0.2, 0.5}) {
            for (boolean align : new boolean[] {false, true}) {
                List<LayerShape> shapes = new ArrayList<>();
                for (LayerShape s : c.layers()) {
                    int kv = (int) Math.round(s.numKvHeads() * (1 - prune));
                    int channels = (int) Math.round(s.intermediateSize() * (1 - prune));
                    if (align) {
                        channels = Math.max(64, (int) Math.round(channels / 64.0) * 64); // hardware-friendly widths
                    }
                    shapes.add(new LayerShape(kv * s.groupSize(), kv, channels));
                }
                if (align && shapes.get(0).intermediateSize() == (int) Math.round(c.layer(0).intermediateSize() * (1 - prune))) {
                    continue; // already a multiple of 64: the same model
                }
                String name = "pruned-" + Math.round(prune * 100) + "%" + (align ? "-a64" : "");
                Path dir = TestModels.slice(dense, shapes, out.resolve(name.replace("%", "") + "-model"));
                variants.add(variant(name, dir, out));
            }
        }
        return String.format(Locale.ROOT, "Model: random LLaMA, hidden %d, %d layers, %d heads (head_dim %d, MHA), intermediate %d, vocab %d, fp32.",
                hidden, layers, heads, hidden / heads, inter, vocab);
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

    /** Per-op-type decode time of each model from ONNX Runtime's profiler, as a Markdown table. */
    private static String profile(List<Variant> models, int threads, Path out) throws Exception {
        Map<String, Map<String, Double>> byModel = new java.util.LinkedHashMap<>();
        java.util.Set<String> ops = new java.util.TreeSet<>();
        int steps = 50;
        for (Variant v : models) {
            Map<String, Double> perOp = new HashMap<>();
            try (Ort ort = new Ort(v.dir().resolve("onnx-kv/model.onnx"), threads, out.resolve("profile-" + v.name().replace("%", "")))) {
                Variant p = new Variant(v.name(), v.dir(), v.config(), null, ort, 0, 0);
                timeDecode(p, 5 + steps);
                Path file = ort.endProfiling();
                com.fasterxml.jackson.databind.JsonNode events = new com.fasterxml.jackson.databind.ObjectMapper().readTree(file.toFile());
                for (com.fasterxml.jackson.databind.JsonNode e : events) {
                    if ("Node".equals(e.path("cat").asText()) && e.path("name").asText().endsWith("_kernel_time")) {
                        String op = e.path("args").path("op_name").asText();
                        perOp.merge(op, e.path("dur").asDouble() / (5 + steps), Double::sum);
                    }
                }
            }
            byModel.put(v.name(), perOp);
            ops.addAll(perOp.keySet());
        }
        StringBuilder b = new StringBuilder("| op |");
        for (String m : byModel.keySet()) {
            b.append(' ').append(m).append(" |");
        }
        b.append(" dense / last |\n|---|");
        byModel.keySet().forEach(m -> b.append("---|"));
        b.append("---|\n");
        List<String> sorted = new ArrayList<>(ops);
        Map<String, Double> first = byModel.values().iterator().next();
        Map<String, Double> last = new ArrayList<>(byModel.values()).get(byModel.size() - 1);
        sorted.sort((x, y) -> Double.compare(first.getOrDefault(y, 0.0), first.getOrDefault(x, 0.0)));
        Map<String, Double> totals = new java.util.LinkedHashMap<>();
        for (String op : sorted) {
            b.append("| ").append(op).append(" |");
            for (Map.Entry<String, Map<String, Double>> m : byModel.entrySet()) {
                double us = m.getValue().getOrDefault(op, 0.0);
                totals.merge(m.getKey(), us, Double::sum);
                b.append(String.format(Locale.ROOT, " %.0f |", us));
            }
            b.append(String.format(Locale.ROOT, " %.2fx |%n", first.getOrDefault(op, 0.0) / Math.max(1e-9, last.getOrDefault(op, 0.0))));
        }
        b.append("| **all nodes** |");
        totals.values().forEach(t -> b.append(String.format(Locale.ROOT, " %.0f |", t)));
        b.append(String.format(Locale.ROOT, " %.2fx |%n", totals.get(models.get(0).name()) / totals.get(models.get(models.size() - 1).name())));
        return b.toString();
    }

    private static long layerParams(ModelConfig c) {
        return c.layers().stream().mapToLong(s -> ModelStats.layerParameters(c, s)).sum();
    }

    private static Variant variant(String name, Path model, Path out) throws Exception {
        Path dir = out.resolve(name.replace("%", ""));
        Exporter.Result onnx = Exporter.export(model, ExportFormat.ONNX, dir.resolve("onnx"));
        Exporter.export(model, ExportFormat.ONNX_KV, dir.resolve("onnx-kv"));
        Exporter.Result ts = Exporter.export(model, ExportFormat.TORCHSCRIPT, dir.resolve("torchscript"));
        long onnxBytes = Files.size(onnx.dir().resolve("model.onnx"));
        long ptBytes = Files.size(ts.dir().resolve(TorchScriptExporter.FILE));
        return new Variant(name, dir, ModelConfig.load(model), null, null, onnxBytes, ptBytes);
    }

    /** Mean ms of {@code n} prefill calls (inputs made once, outside the timing). */
    private static double timePrefill(Variant v, int n) throws OrtException {
        Map<String, ai.onnxruntime.OnnxTensor> in = new HashMap<>();
        try {
            in.put("input_ids", v.logits().longTensor(Reference.ids(1, PREFILL, v.config().vocabSize(), 3)));
            in.put("attention_mask", v.logits().longTensor(Ort.ones(1, PREFILL)));
            long t0 = now();
            for (int i = 0; i < n; i++) {
                v.logits().runPrepared(in, java.util.Set.of("logits"));
            }
            return (now() - t0) / 1e6 / n;
        } finally {
            in.values().forEach(ai.onnxruntime.OnnxTensor::close);
        }
    }

    /**
     * Mean ms of {@code n} single-token decode calls on a cache of PREFILL tokens (zeros: the cost is the same). The
     * cache tensors are made once, outside the timing, as a generation loop keeps them in native memory: copying them
     * from Java arrays on every call would add a cost proportional to the KV heads that is not the model's.
     */
    private static double timeDecode(Variant v, int n) throws OrtException {
        ModelConfig c = v.config();
        Map<String, ai.onnxruntime.OnnxTensor> in = new HashMap<>();
        try {
            for (int i : OnnxExporter.cachedLayers(c)) {
                for (String kind : List.of("key", "value")) {
                    int kvh = c.layer(i).numKvHeads();
                    in.put(OnnxExporter.pastName(i, kind), v.kv().floatTensor(new float[kvh * PREFILL * c.headDim()],
                            new long[] {1, kvh, PREFILL, c.headDim()}));
                }
            }
            in.put("input_ids", v.kv().longTensor(new long[][] {{5}}));
            in.put("attention_mask", v.kv().longTensor(Ort.ones(1, PREFILL + 1)));
            long t0 = now();
            for (int i = 0; i < n; i++) {
                v.kv().runPrepared(in, java.util.Set.of("logits"));
            }
            return (now() - t0) / 1e6 / n;
        } finally {
            in.values().forEach(ai.onnxruntime.OnnxTensor::close);
        }
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
