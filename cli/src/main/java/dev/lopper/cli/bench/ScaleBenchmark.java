package dev.lopper.cli.bench;

import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.cli.PruneCommand;
import dev.lopper.model.ModelStats;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.model.testing.StreamedRandomModels;
import dev.lopper.model.util.ProcessMemory;
import picocli.CommandLine;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;

/**
 * The scale benchmark (scripts/bench/scale, scripts/bench/scaling): generates LLaMA-shaped BF16 models of real
 * sizes tensor by tensor ({@link StreamedRandomModels}) and prunes them in this JVM with the {@code prune}
 * command, sampling the process's memory every 100 ms and splitting time and peaks by stage (scoring =
 * opening, tokenizing, calibration and allocation; surgery; save) from the stage lines the command prints.
 *
 * <pre>
 *   generate DIR LAYERS HIDDEN HEADS KV_HEADS HEAD_DIM INTERMEDIATE VOCAB TIED SHARDS
 *   prune MODEL CALIB OUT METHOD SAMPLES SEQ_LEN RATIO REPORT_JSON
 * </pre>
 */
public final class ScaleBenchmark {
    private ScaleBenchmark() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 11 && args[0].equals("generate")) {
            int[] v = new int[7];
            for (int i = 0; i < 7; i++) {
                v[i] = Integer.parseInt(args[2 + i]);
            }
            RandomModels.Spec s = RandomModels.llama().withLayers(v[0]).withHeads(v[2], v[3]).withSize(v[1], v[4], v[5])
                    .withDtype(DataType.BFLOAT16).withShards(Integer.parseInt(args[10])).withTied(Boolean.parseBoolean(args[9]));
            s = new RandomModels.Spec(s.family(), v[6], s.hidden(), s.layers(), s.heads(), s.kvHeads(), s.headDim(), s.intermediate(),
                    s.tied(), s.qkvBias(), s.shards(), s.dtype(), s.seed(), s.ropeTheta(), s.ropeScaling(), s.slidingWindow());
            long t0 = System.nanoTime();
            ModelConfig c = StreamedRandomModels.write(Path.of(args[1]), s);
            System.out.printf(Locale.ROOT, "generated %s: %,d parameters in %.0f s%n", args[1], ModelStats.parameters(c), (System.nanoTime() - t0) / 1e9);
            return;
        }
        if (args.length != 9 || !args[0].equals("prune")) {
            System.err.println("usage: generate DIR LAYERS HIDDEN HEADS KV_HEADS HEAD_DIM INTERMEDIATE VOCAB TIED SHARDS"
                    + " | prune MODEL CALIB OUT METHOD SAMPLES SEQ_LEN RATIO REPORT_JSON");
            System.exit(2);
        }
        prune(args);
    }

    private static void prune(String[] a) throws Exception {
        Path model = Path.of(a[1]);
        String load0 = loadAverage();
        long t0 = System.nanoTime();
        List<double[]> samples = new ArrayList<>(); // t, RssAnon, VmRSS, RssFile (bytes)
        Thread sampler = new Thread(() -> {
            while (!Thread.currentThread().isInterrupted()) {
                double[] s = {(System.nanoTime() - t0) / 1e9, ProcessMemory.bytes("RssAnon"), ProcessMemory.bytes("VmRSS"), ProcessMemory.bytes("RssFile")};
                synchronized (samples) {
                    samples.add(s);
                }
                try {
                    Thread.sleep(100);
                } catch (InterruptedException e) {
                    return;
                }
            }
        });
        sampler.setDaemon(true);
        sampler.start();
        // the command prints its stages ("surgery", "save") on stderr: tee it with timestamps
        List<String> lines = new ArrayList<>();
        List<Double> times = new ArrayList<>();
        PrintStream realErr = System.err;
        System.setErr(new PrintStream(new LineTee(realErr, line -> {
            synchronized (lines) {
                lines.add(line);
                times.add((System.nanoTime() - t0) / 1e9);
            }
        }), true, StandardCharsets.UTF_8));
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new PruneCommand());
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int code = cl.execute(model.toString(), "--method", a[4], "--ratio", a[7], "--calib", a[2], "--samples", a[5],
                "--seq-len", a[6], "--out", a[3], "--json");
        double total = (System.nanoTime() - t0) / 1e9;
        sampler.interrupt();
        sampler.join();
        System.setErr(realErr);
        if (code != 0) {
            System.err.println(err);
            System.exit(code);
        }
        double surgery = total;
        double save = total;
        synchronized (lines) {
            for (int i = 0; i < lines.size(); i++) {
                if (lines.get(i).trim().equals("surgery")) {
                    surgery = times.get(i);
                } else if (lines.get(i).trim().equals("save")) {
                    save = times.get(i);
                }
            }
        }
        ModelConfig c = ModelConfig.load(model);
        ObjectMapper om = new ObjectMapper();
        ObjectNode r = om.createObjectNode();
        r.put("model", model.toString());
        r.put("layers", c.numLayers()).put("hidden", c.hiddenSize()).put("intermediate", c.layer(0).intermediateSize())
                .put("heads", c.layer(0).numHeads()).put("kv_heads", c.layer(0).numKvHeads()).put("vocab", c.vocabSize())
                .put("tied", c.tieWordEmbeddings());
        r.put("parameters", ModelStats.parameters(c));
        r.put("checkpoint_bytes", diskBytes(model));
        r.put("method", a[4]).put("samples", Integer.parseInt(a[5])).put("seq_len", Integer.parseInt(a[6]))
                .put("tokens", (long) Integer.parseInt(a[5]) * Integer.parseInt(a[6])).put("ratio", Double.parseDouble(a[7]));
        r.put("seconds", total);
        // CPU time of the whole process: on a shared machine a steadier measure of the work than wall time
        r.put("cpu_seconds", ProcessHandle.current().info().totalCpuDuration().map(d -> d.toMillis() / 1000.0).orElse(-1.0));
        r.put("peak_rss_bytes", ProcessMemory.bytes("VmHWM"));
        r.put("cores", Runtime.getRuntime().availableProcessors());
        r.put("max_heap_bytes", Runtime.getRuntime().maxMemory());
        r.put("load_average_start", load0).put("load_average_end", loadAverage());
        ArrayNode stages = r.putArray("stages");
        stage(stages, samples, "scoring", 0, surgery);
        stage(stages, samples, "surgery", surgery, save);
        stage(stages, samples, "save", save, total);
        ArrayNode series = r.putArray("timeline"); // [seconds, RssAnon, VmRSS, RssFile MiB]
        synchronized (samples) {
            for (double[] s : samples) {
                series.addArray().add(Math.round(s[0] * 10) / 10.0).add(mib(s[1])).add(mib(s[2])).add(mib(s[3]));
            }
        }
        Path report = Path.of(a[8]);
        om.writerWithDefaultPrettyPrinter().writeValue(report.toFile(), r);
        System.out.printf(Locale.ROOT, "%s %s, %s x %s tokens: %.1f s, peak RSS (VmHWM) %.0f MiB; load %s -> %s%n", model.getFileName(), a[4], a[5], a[6],
                total, mib(ProcessMemory.bytes("VmHWM")), load0, loadAverage());
        for (var s : stages) {
            System.out.printf(Locale.ROOT, "  %-8s %7.1f s  peak RssAnon %6.0f MiB  peak VmRSS %6.0f MiB%n", s.get("stage").asText(),
                    s.get("seconds").asDouble(), s.get("peak_rss_anon_mib").asDouble(), s.get("peak_vm_rss_mib").asDouble());
        }
        System.out.println("report: " + report);
    }

    private static void stage(ArrayNode stages, List<double[]> samples, String name, double from, double to) {
        double anon = 0;
        double rss = 0;
        synchronized (samples) {
            for (double[] s : samples) {
                if (s[0] >= from && s[0] <= to) {
                    anon = Math.max(anon, s[1]);
                    rss = Math.max(rss, s[2]);
                }
            }
        }
        stages.addObject().put("stage", name).put("seconds", to - from).put("peak_rss_anon_mib", mib(anon)).put("peak_vm_rss_mib", mib(rss));
    }

    private static double mib(double bytes) {
        return Math.round(bytes / 1048576.0 * 10) / 10.0;
    }

    private static long diskBytes(Path model) throws IOException {
        try (Stream<Path> files = Files.list(model)) {
            return files.filter(p -> p.toString().endsWith(".safetensors")).mapToLong(p -> p.toFile().length()).sum();
        }
    }

    private static String loadAverage() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split(" ");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (IOException | RuntimeException e) {
            return "unknown";
        }
    }

    /** Passes bytes through and hands every completed line to a sink. */
    private static final class LineTee extends OutputStream {
        private final OutputStream out;
        private final java.util.function.Consumer<String> sink;
        private final ByteArrayOutputStream line = new ByteArrayOutputStream();

        LineTee(OutputStream out, java.util.function.Consumer<String> sink) {
            this.out = out;
            this.sink = sink;
        }

        @Override
        public synchronized void write(int b) throws IOException {
            out.write(b);
            if (b == '\n') {
                sink.accept(line.toString(StandardCharsets.UTF_8));
                line.reset();
            } else {
                line.write(b);
            }
        }

        @Override
        public void flush() throws IOException {
            out.flush();
        }
    }
}
