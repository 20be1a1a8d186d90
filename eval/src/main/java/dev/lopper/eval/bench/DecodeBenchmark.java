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
            List<Double> lopperPrefill = new ArrayList<>();
            List<Double> onnxPrefill = new ArrayList<>();
            for (int r = 0; r < rounds; r++) {
                add(lopper, prompt, steps, lopperMs, lopperPrefill);
                add(onnx, prompt, steps, onnxMs, onnxPrefill);
            }
            double lm = median(lopperMs);
            double om = median(onnxMs);
            System.out.printf(Locale.ROOT, "| %s | %d | %d | %.2f | %.1f | %.2f | %.1f | %.2fx | %.1f / %.1f | %s |%n",
                    name, promptLen, steps - 1, lm, 1000 / lm, om, 1000 / om, om / lm, median(lopperPrefill),
                    median(onnxPrefill), Arrays.equals(a, b) ? "same" : "DIFFERENT");
            System.out.printf(Locale.ROOT, "per-round ms/token: lopper %s; onnx-kv %s%n", lopperMs, onnxMs);
        }
    }

    private static void add(Evaluator ev, long[] prompt, int steps, List<Double> msPerToken, List<Double> prefillMs) {
        Evaluator.DecodeTiming t = ev.decode(prompt, steps);
        msPerToken.add(Math.round(t.decodeSeconds() * 1000 / (steps - 1) * 1000) / 1000.0);
        prefillMs.add(t.prefillSeconds() * 1000);
    }

    private static double median(List<Double> v) {
        double[] s = v.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }
}
