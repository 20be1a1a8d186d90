package dev.lopper.calibration.bench;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import dev.lopper.calibration.gradient.GradientEngine;
import dev.lopper.calibration.gradient.LayerParam;
import dev.lopper.calibration.gradient.WholeModelBackward;
import dev.lopper.model.ModelStats;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.testing.RandomModels;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Gradient scoring's memory and speed (scripts/bench/gradient-memory): the streamed layer-by-layer backward
 * ({@link GradientEngine}) or a whole-model backward ({@link WholeModelBackward}) of a generated model, with peak
 * RSS sampled every 20 ms and tokens/s.
 *
 * <pre>
 *   generate DIR LAYERS HIDDEN HEADS KV_HEADS HEAD_DIM INTERMEDIATE VOCAB
 *   run MODEL streamed|streamed-per-sample|whole SAMPLES SEQ_LEN [SPILL_DIR]
 * </pre>
 */
public final class GradientMemoryBenchmark {
    private GradientMemoryBenchmark() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 9 && args[0].equals("generate")) {
            int[] v = new int[7];
            for (int i = 0; i < 7; i++) {
                v[i] = Integer.parseInt(args[i + 2]);
            }
            RandomModels.Spec s = RandomModels.llama().withLayers(v[0]).withHeads(v[2], v[3]).withSize(v[1], v[4], v[5])
                    .withDtype(DataType.BFLOAT16).withShards(4);
            s = new RandomModels.Spec(s.family(), v[6], s.hidden(), s.layers(), s.heads(), s.kvHeads(), s.headDim(),
                    s.intermediate(), s.tied(), s.qkvBias(), s.shards(), s.dtype(), s.seed(), s.ropeTheta(),
                    s.ropeScaling(), s.slidingWindow());
            RandomModels.write(Path.of(args[1]), s);
            System.out.println("generated " + args[1]);
            return;
        }
        if ((args.length != 5 && args.length != 6) || !args[0].equals("run")) {
            System.err.println("usage: generate DIR LAYERS HIDDEN HEADS KV_HEADS HEAD_DIM INTERMEDIATE VOCAB"
                    + " | run MODEL streamed|streamed-per-sample|whole SAMPLES SEQ_LEN [SPILL_DIR]");
            System.exit(2);
        }
        Path model = Path.of(args[1]);
        String mode = args[2];
        int n = Integer.parseInt(args[3]);
        int t = Integer.parseInt(args[4]);
        ModelConfig c = ModelConfig.load(model);
        long[][] windows = new long[n][t];
        SplittableRandom r = new SplittableRandom(1);
        for (long[] w : windows) {
            for (int j = 0; j < t; j++) {
                w[j] = r.nextInt(c.vocabSize());
            }
        }
        Sampler sampler = new Sampler();
        sampler.start();
        long t0 = System.nanoTime();
        double meanLoss;
        double[] checksum = new double[1];
        try (Checkpoint ckpt = Checkpoint.open(model)) {
            if (mode.equals("whole")) {
                meanLoss = WholeModelBackward.run(c, ckpt, windows, DataType.FLOAT32, true, false).loss() / n;
            } else {
                GradientEngine.Options o = GradientEngine.Options.defaults().withPerSample(mode.equals("streamed-per-sample"))
                        .withSpillDir(args.length == 6 ? Path.of(args[5]) : null);
                // a stand-in criterion: reduce every parameter's statistics to one number while the layer is loaded
                meanLoss = new GradientEngine(c, ckpt, Device.cpu()).run(windows, (w, g) -> {
                    for (LayerParam p : g.params()) {
                        checksum[0] += g.gradientSum(p).abs().sum().toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble();
                        if (g.hasSquares()) {
                            checksum[0] += g.squaredGradientSum(p).sum().toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble();
                        }
                    }
                }, o).meanLoss();
            }
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        sampler.stopAndJoin();
        long params = ModelStats.parameters(c);
        long maxLayer = c.layers().stream().mapToLong(s -> ModelStats.layerParameters(c, s)).max().orElse(0) * 4;
        long disk;
        try (var files = Files.list(model)) {
            disk = files.filter(p -> p.toString().endsWith(".safetensors")).mapToLong(GradientMemoryBenchmark::size).sum();
        }
        System.out.printf(Locale.ROOT, "model: %d layers, hidden %d, intermediate %d, vocab %d; %,d parameters%n",
                c.numLayers(), c.hiddenSize(), c.layer(0).intermediateSize(), c.vocabSize(), params);
        System.out.printf(Locale.ROOT, "mode %s, %d x %d tokens: %.1f s, %.1f tokens/s, mean loss %.4f%n", mode, n, t, seconds,
                n * t / seconds, meanLoss);
        row("JVM heap limit (-Xmx)", Runtime.getRuntime().maxMemory());
        row("checkpoint on disk (BF16)", disk);
        row("all weights as fp32", params * 4);
        row("one decoder layer as fp32", maxLayer);
        row("layer-boundary hidden states (layers + 1) x N x T x hidden fp32", (long) (c.numLayers() + 1) * n * t * c.hiddenSize() * 4);
        row("peak heap used (sampled)", sampler.heap);
        row("peak anonymous RSS (RssAnon, sampled every 20 ms)", sampler.anon);
        row("peak RSS incl. mapped checkpoint pages (VmHWM)", Sampler.status("VmHWM"));
        System.out.printf(Locale.ROOT, "peak RssAnon / fp32 weights = %.2f; peak RssAnon / one layer = %.1f%n",
                (double) sampler.anon / (params * 4), (double) sampler.anon / maxLayer);
    }

    private static long size(Path p) {
        try {
            return Files.size(p);
        } catch (IOException e) {
            return 0;
        }
    }

    private static void row(String what, long bytes) {
        System.out.printf(Locale.ROOT, "  %-66s %10.1f MiB%n", what, bytes / 1048576.0);
    }

    /** Samples RssAnon and heap use; the kernel keeps only the peak of total RSS (VmHWM). */
    private static final class Sampler extends Thread {
        volatile boolean stop;
        long anon;
        long heap;

        Sampler() {
            setDaemon(true);
        }

        @Override
        public void run() {
            while (!stop) {
                anon = Math.max(anon, status("RssAnon"));
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
