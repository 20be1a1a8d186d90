package dev.lopper.eval.bench;

import ai.djl.Device;
import dev.lopper.eval.Evaluator;
import dev.lopper.eval.backend.LopperBackend;
import dev.lopper.eval.backend.OnnxBackend;
import dev.lopper.model.Threads;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Decode speed of Lopper's own generation (KV cache, DJL/libtorch) next to the same model's {@code onnx-kv} export
 * in ONNX Runtime, in one JVM with rounds interleaved (scripts/bench/decode-speed, docs/BENCHMARKS.md "Decode").
 * Both run greedy from the same prompt; the generated tokens are compared, so a faster backend that decodes
 * something else would show.
 *
 * <p>Prints a markdown row: model, threads, prompt tokens, decoded tokens, then per backend the median wall ms per
 * token and tokens/s, the ratio (ONNX Runtime time / Lopper time: above 1 means Lopper is faster), and the median
 * CPU ms per token of the calling thread with their ratio (meaningful with one thread), and whether both
 * generated the same tokens.
 *
 * <p>Usage: {@code DecodeBenchmark NAME LOPPER_DIR ONNX_KV_DIR THREADS PROMPT_TOKENS STEPS ROUNDS}
 */
public final class DecodeBenchmark {
    private DecodeBenchmark() {
    }

    public static void main(String[] args) {
        String name = args[0];
        Path lopperDir = Path.of(args[1]);
        Path onnxDir = Path.of(args[2]);
        int threads = Integer.parseInt(args[3]);
        int promptLen = Integer.parseInt(args[4]);
        int steps = Integer.parseInt(args[5]);
        int rounds = Integer.parseInt(args[6]);
        Threads.set(threads);
        try (LopperBackend lopper = new LopperBackend(lopperDir, Device.cpu()); OnnxBackend onnx = new OnnxBackend(onnxDir, threads)) {
            long[] prompt = new long[promptLen];
            for (int i = 0; i < promptLen; i++) {
                prompt[i] = (i * 7919L + 13) % lopper.config().vocabSize();
            }
            long[] a = lopper.decode(prompt, steps).tokens(); // warm-up (and the tokens to compare)
            long[] b = onnx.decode(prompt, steps).tokens();
            List<Double> lopperMs = new ArrayList<>();
            List<Double> onnxMs = new ArrayList<>();
            List<Double> lopperCpu = new ArrayList<>();
            List<Double> onnxCpu = new ArrayList<>();
            for (int r = 0; r < rounds; r++) {
                add(lopper, prompt, steps, lopperMs, lopperCpu);
                add(onnx, prompt, steps, onnxMs, onnxCpu);
            }
            double lm = median(lopperMs);
            double om = median(onnxMs);
            double lc = median(lopperCpu);
            double oc = median(onnxCpu);
            // | model | threads | prompt | tokens | lopper wall ms | tok/s | onnx wall ms | tok/s | wall ratio | lopper cpu ms | onnx cpu ms | cpu ratio | tokens |
            System.out.printf(Locale.ROOT, "| %s | %d | %d | %d | %.2f | %.1f | %.2f | %.1f | %.2fx | %.2f | %.2f | %.2fx | %s |%n",
                    name, threads, promptLen, steps - 1, lm, 1000 / lm, om, 1000 / om, om / lm, lc, oc, oc / lc,
                    Arrays.equals(a, b) ? "same" : "DIFFERENT");
            System.out.printf(Locale.ROOT, "per-round ms/token wall: lopper %s; onnx-kv %s; cpu of the calling thread: lopper %s; onnx-kv %s%n",
                    lopperMs, onnxMs, lopperCpu, onnxCpu);
        }
    }

    /**
     * Wall ms per decoded token (after the first step, which is the prefill), and CPU ms of this thread per decoded
     * token: the CPU time of {@code steps} steps minus that of a 1-step (prefill-only) call, over steps - 1. With one
     * intra-op thread both runtimes compute on the calling thread, so the CPU figure does not count the time other
     * processes on a shared machine took.
     */
    private static void add(Evaluator ev, long[] prompt, int steps, List<Double> msPerToken, List<Double> cpuMs) {
        long c0 = CPU.getCurrentThreadCpuTime();
        ev.decode(prompt, 1);
        long c1 = CPU.getCurrentThreadCpuTime();
        Evaluator.DecodeTiming t = ev.decode(prompt, steps);
        long c2 = CPU.getCurrentThreadCpuTime();
        msPerToken.add(round3(t.decodeSeconds() * 1000 / (steps - 1)));
        cpuMs.add(round3(((c2 - c1) - (c1 - c0)) / 1e6 / (steps - 1)));
    }

    private static final java.lang.management.ThreadMXBean CPU = java.lang.management.ManagementFactory.getThreadMXBean();

    private static double round3(double v) {
        return Math.round(v * 1000) / 1000.0;
    }

    private static double median(List<Double> v) {
        double[] s = v.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }
}
