package dev.lopper.cli.bench;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.calibration.CalibrationData;
import dev.lopper.calibration.CalibrationEngine;
import dev.lopper.calibration.ChannelStats;
import dev.lopper.calibration.ChannelStatsCollector;
import dev.lopper.calibration.Tap;
import dev.lopper.model.ModelDir;
import dev.lopper.model.Threads;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Speed of the calibration pass that Wanda-sp, FLAP and CFSP run (layer-streamed forward + per-channel statistics
 * of o_proj's and down_proj's inputs), against the GEMM rate of the same engine on the same layer's matmul shapes,
 * measured in the same JVM (scripts/bench/calibration-speed, docs/BENCHMARKS.md "Calibration speed").
 *
 * <pre>
 *   calib MODEL THREADS SAMPLES SEQ_LEN REPEATS [CHUNK_TOKENS]
 *   threads MODEL MAX_THREADS     GEMM GFLOP/s per intra-op thread count, small / large / matrix-vector shapes
 * </pre>
 */
public final class CalibrationSpeedBenchmark {
    private CalibrationSpeedBenchmark() {
    }

    public static void main(String[] args) {
        Path model = Path.of(args[1]);
        if (args[0].equals("threads")) {
            threadScan(model, Integer.parseInt(args[2]));
            return;
        }
        int threads = Threads.set(Integer.parseInt(args[2]));
        int samples = Integer.parseInt(args[3]);
        int seqLen = Integer.parseInt(args[4]);
        int repeats = Integer.parseInt(args[5]);
        int chunkTokens = args.length > 6 ? Integer.parseInt(args[6]) : 512;
        try (ModelDir md = ModelDir.open(model)) {
            ModelConfig c = md.config();
            int chunk = Math.max(1, Math.min(samples, chunkTokens / seqLen));
            double gemm = layerGemmRate(c, chunk * seqLen, 3);
            double flopsPerToken = flopsPerToken(c, seqLen);
            CalibrationData data = windows(c, samples, seqLen);
            run(md, c, windows(c, Math.min(samples, chunk), seqLen), chunkTokens); // warm-up: JIT, page cache
            List<Double> secs = new ArrayList<>();
            List<Double> cpuSecs = new ArrayList<>();
            double checksum = 0;
            for (int r = 0; r < repeats; r++) {
                long t0 = System.nanoTime();
                long c0 = processCpuNanos();
                checksum = run(md, c, data, chunkTokens);
                secs.add(Math.round((System.nanoTime() - t0) / 1e6) / 1e3);
                cpuSecs.add(Math.round((processCpuNanos() - c0) / 1e6) / 1e3);
            }
            double best = secs.stream().mapToDouble(Double::doubleValue).min().orElseThrow();
            double bestCpu = cpuSecs.stream().mapToDouble(Double::doubleValue).min().orElseThrow();
            double tokens = (double) samples * seqLen;
            double achieved = flopsPerToken * tokens / best;
            System.out.printf(Locale.ROOT, "lopper threads %d, %d x %d tokens, chunk %d windows; runs (s): %s; process CPU (s): %s; checksum %.6e%n",
                    threads, samples, seqLen, chunk, secs, cpuSecs, checksum);
            // | engine | threads | tokens/s | GFLOP/s | GEMM GFLOP/s | ratio | tokens per CPU-second | GFLOP per CPU-second |
            System.out.printf(Locale.ROOT, "| lopper | %d | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f |%n",
                    threads, tokens / best, achieved / 1e9, gemm / 1e9, achieved / gemm, tokens / bestCpu,
                    flopsPerToken * tokens / bestCpu / 1e9);
        }
    }

    /** CPU time of the whole process (all threads: libtorch's workers, the JVM's GC and JIT). */
    static long processCpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime();
    }

    /** One calibration pass with FLAP / Wanda-sp's statistics; returns a checksum of the statistics. */
    private static double run(ModelDir md, ModelConfig c, CalibrationData data, int chunkTokens) {
        ChannelStatsCollector stats = new ChannelStatsCollector(EnumSet.of(Tap.O_PROJ_INPUT, Tap.DOWN_PROJ_INPUT));
        new CalibrationEngine(c, md.checkpoint(), Device.cpu()).run(data, List.of(stats),
                CalibrationEngine.Options.defaults().withChunkTokens(chunkTokens));
        double sum = 0;
        for (int i = 0; i < c.numLayers(); i++) {
            for (Tap t : new Tap[] {Tap.O_PROJ_INPUT, Tap.DOWN_PROJ_INPUT}) {
                ChannelStats s = stats.get(i, t);
                for (double v : s.flapFluctuation()) {
                    sum += v;
                }
                for (double v : s.sumOfSquares()) {
                    sum += v;
                }
            }
        }
        return sum;
    }

    /** Seeded random token windows (the speed does not depend on the text). */
    static CalibrationData windows(ModelConfig c, int samples, int seqLen) {
        SplittableRandom r = new SplittableRandom(0);
        long[][] w = new long[samples][seqLen];
        for (long[] row : w) {
            for (int j = 0; j < seqLen; j++) {
                row[j] = r.nextInt(c.vocabSize());
            }
        }
        return CalibrationData.of(w);
    }

    /**
     * Matmul FLOPs per token of one pass through every layer (no LM head: calibration never runs it): the seven
     * projections, and the attention products as executed (full T x T scores and weighted sum per head; the causal
     * mask is applied by addition, so the masked half is computed too).
     */
    static double flopsPerToken(ModelConfig c, int seqLen) {
        double f = 0;
        for (LayerShape s : c.layers()) {
            f += 2.0 * linearParams(c, s) + 2.0 * 2 * seqLen * s.numHeads() * c.headDim();
        }
        return f;
    }

    private static long linearParams(ModelConfig c, LayerShape s) {
        long h = c.hiddenSize();
        long q = (long) s.numHeads() * c.headDim();
        long kv = (long) s.numKvHeads() * c.headDim();
        return h * q + 2 * h * kv + q * h + 3 * h * s.intermediateSize();
    }

    /** GFLOP/s of the first layer's seven projections on {@code tokens} rows (x W^T as the forward does), best of n. */
    static double layerGemmRate(ModelConfig c, int tokens, int n) {
        LayerShape s = c.layers().get(0);
        long h = c.hiddenSize();
        long q = (long) s.numHeads() * c.headDim();
        long kv = (long) s.numKvHeads() * c.headDim();
        long inter = s.intermediateSize();
        long[][] shapes = {{q, h}, {kv, h}, {kv, h}, {h, q}, {inter, h}, {inter, h}, {h, inter}};
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            double flops = 0;
            double best = Double.MAX_VALUE;
            List<NDArray[]> pairs = new ArrayList<>();
            for (long[] w : shapes) {
                pairs.add(new NDArray[] {m.randomNormal(new Shape(1, tokens, w[1])), m.randomNormal(new Shape(w[0], w[1]))});
                flops += 2.0 * tokens * w[0] * w[1];
            }
            for (int i = 0; i <= n; i++) {
                long t0 = System.nanoTime();
                for (NDArray[] p : pairs) {
                    dev.lopper.model.Decoder.linear(p[0], p[1], null).close();
                }
                double secs = (System.nanoTime() - t0) / 1e9;
                if (i > 0) {
                    best = Math.min(best, secs);
                }
            }
            return flops / best;
        }
    }

    /** x [rows, k] W^T [k, n] GFLOP/s per thread count 1..max (best of 5). */
    private static void threadScan(Path model, int maxThreads) {
        ModelConfig c;
        try (ModelDir md = ModelDir.open(model)) {
            c = md.config();
        }
        long h = c.hiddenSize();
        long inter = c.layers().get(0).intermediateSize();
        long[][] shapes = {{512, 256, 704}, {512, h, inter}, {1, h, inter}, {1, 256, 704}};
        System.out.println("| threads | " + String.join(" | ", java.util.Arrays.stream(shapes)
                .map(s -> s[0] + "x" + s[1] + "x" + s[2]).toList()) + " |");
        for (int t = 1; t <= maxThreads; t++) {
            Threads.set(t);
            StringBuilder row = new StringBuilder("| " + t + " |");
            try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
                for (long[] s : shapes) {
                    NDArray x = m.randomNormal(new Shape(1, s[0], s[1]));
                    NDArray w = m.randomNormal(new Shape(s[2], s[1]));
                    int reps = (int) Math.max(1, Math.min(2000, 2e9 / (2.0 * s[0] * s[1] * s[2])));
                    double best = Double.MAX_VALUE;
                    for (int i = 0; i < 6; i++) {
                        long t0 = System.nanoTime();
                        for (int k = 0; k < reps; k++) {
                            dev.lopper.model.Decoder.linear(x, w, null).close();
                        }
                        double secs = (System.nanoTime() - t0) / 1e9 / reps;
                        if (i > 0) {
                            best = Math.min(best, secs);
                        }
                    }
                    row.append(String.format(Locale.ROOT, " %.1f |", 2.0 * s[0] * s[1] * s[2] / best / 1e9));
                }
            }
            System.out.println(row);
        }
    }
}
