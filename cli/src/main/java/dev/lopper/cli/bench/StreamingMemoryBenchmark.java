package dev.lopper.cli.bench;

import ai.djl.ndarray.types.DataType;
import dev.lopper.cli.PruneCommand;
import dev.lopper.model.ModelStats;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import picocli.CommandLine;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Stream;

/**
 * The streaming-memory proof (scripts/bench/streaming-memory): generates a random model whose fp32 weights are
 * several times the JVM heap, prunes it with a calibration criterion in this (small-heap) JVM, and reports peak
 * resident memory against the size of one layer and of the whole model.
 *
 * <pre>
 *   generate DIR LAYERS HIDDEN HEADS KV_HEADS HEAD_DIM INTERMEDIATE VOCAB
 *   prune MODEL CALIB OUT METHOD SAMPLES SEQ_LEN RATIO
 * </pre>
 */
public final class StreamingMemoryBenchmark {
    private StreamingMemoryBenchmark() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("generate")) {
            int[] v = Arrays.stream(args, 2, 9).mapToInt(Integer::parseInt).toArray();
            RandomModels.Spec spec = RandomModels.llama().withLayers(v[0]).withHeads(v[2], v[3]).withSize(v[1], v[4], v[5])
                    .withDtype(DataType.BFLOAT16).withShards(4);
            spec = new RandomModels.Spec(spec.family(), v[6], spec.hidden(), spec.layers(), spec.heads(), spec.kvHeads(),
                    spec.headDim(), spec.intermediate(), spec.tied(), spec.qkvBias(), spec.shards(), spec.dtype(), spec.seed(),
                    spec.ropeTheta(), spec.ropeScaling(), spec.slidingWindow());
            RandomModels.write(Path.of(args[1]), spec);
            System.out.println("generated " + args[1]);
            return;
        }
        if (args.length != 8 || !args[0].equals("prune")) {
            System.err.println("usage: generate DIR LAYERS HIDDEN HEADS KV_HEADS HEAD_DIM INTERMEDIATE VOCAB | prune MODEL CALIB OUT METHOD SAMPLES SEQ_LEN RATIO");
            System.exit(2);
        }
        Path model = Path.of(args[1]);
        Sampler sampler = new Sampler();
        sampler.start();
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new PruneCommand());
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        long t0 = System.nanoTime();
        int code = cl.execute(model.toString(), "--method", args[4], "--ratio", args[7], "--calib", args[2], "--samples", args[5],
                "--seq-len", args[6], "--out", args[3], "--json");
        double seconds = (System.nanoTime() - t0) / 1e9;
        sampler.stopAndJoin();
        if (code != 0) {
            System.err.println(err);
            System.exit(code);
        }
        ModelConfig c = ModelConfig.load(model);
        long maxLayer = c.layers().stream().mapToLong(s -> ModelStats.layerParameters(c, s)).max().orElse(0) * 4;
        long allParams = ModelStats.parameters(c);
        long hiddenStates = 2L * Integer.parseInt(args[5]) * Integer.parseInt(args[6]) * c.hiddenSize() * 4;
        long embed = (long) c.vocabSize() * c.hiddenSize() * 4;
        long xmx = Runtime.getRuntime().maxMemory();
        long disk;
        try (Stream<Path> files = Files.list(model)) {
            disk = files.filter(p -> p.toString().endsWith(".safetensors")).mapToLong(StreamingMemoryBenchmark::size).sum();
        }
        LayerShape l0 = c.layer(0);
        System.out.printf(Locale.ROOT, "model: %d layers, hidden %d, heads %d/%d x %d, intermediate %d, vocab %d; %,d parameters%n",
                c.numLayers(), c.hiddenSize(), l0.numHeads(), l0.numKvHeads(), c.headDim(), l0.intermediateSize(), c.vocabSize(), allParams);
        System.out.printf(Locale.ROOT, "method %s, %s x %s calibration tokens, ratio %s, %.1f s%n", args[4], args[5], args[6], args[7], seconds);
        row("JVM heap limit (-Xmx)", xmx);
        row("checkpoint on disk (BF16)", disk);
        row("all weights as fp32 (what a full load holds)", allParams * 4);
        row("one decoder layer as fp32", maxLayer);
        row("embedding matrix as fp32 (never held: only the tokens' rows are read)", embed);
        row("calibration hidden states (input + output of a layer)", hiddenStates);
        row("peak heap used (sampled)", sampler.heap);
        row("peak anonymous RSS (RssAnon, sampled every 20 ms)", sampler.anon);
        row("peak RSS incl. mapped checkpoint pages (VmHWM)", Sampler.status("VmHWM"));
        System.out.printf(Locale.ROOT, "fp32 weights / -Xmx = %.1fx; peak RssAnon / fp32 weights = %.2f; (peak RssAnon - hidden states) / one layer = %.1f%n",
                (double) allParams * 4 / xmx, (double) sampler.anon / (allParams * 4), (double) (sampler.anon - hiddenStates) / maxLayer);
    }

    private static long size(Path p) {
        try {
            return Files.size(p);
        } catch (IOException e) {
            return 0;
        }
    }

    private static void row(String what, long bytes) {
        System.out.printf(Locale.ROOT, "  %-58s %10.1f MiB%n", what, bytes / 1048576.0);
    }

    /** Samples RssAnon and heap use; the kernel only keeps the peak of total RSS (VmHWM). */
    private static final boolean TRACE = Boolean.getBoolean("lopper.bench.trace");
    private static final long T0 = System.nanoTime();

    private static final class Sampler extends Thread {
        volatile boolean stop;
        long anon;
        long heap;
        long printed;

        Sampler() {
            setDaemon(true);
        }

        @Override
        public void run() {
            while (!stop) {
                long a = status("RssAnon");
                if (TRACE && a > printed + (64 << 20)) {
                    printed = a;
                    System.err.printf(Locale.ROOT, "[rss] %.1f s: RssAnon %.0f MiB%n", (System.nanoTime() - T0) / 1e9, a / 1048576.0);
                }
                anon = Math.max(anon, a);
                heap = Math.max(heap, ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed());
                try {
                    Thread.sleep(20);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }

        void stopAndJoin() throws InterruptedException {
            stop = true;
            join();
        }

        static long status(String field) {
            return dev.lopper.model.util.ProcessMemory.bytes(field);
        }
    }
}
