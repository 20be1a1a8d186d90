package dev.lopper.eval.bench;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.Devices;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelStats;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

import java.nio.file.Path;
import java.util.Locale;

/**
 * Forward throughput of a model and the machine's GEMM rate in the same engine, so the forward pass can be
 * stated as a fraction of what the hardware does on a plain matmul. Prints one markdown table row per figure.
 *
 * <p>Usage: {@code ForwardBenchmark MODEL [device] [batch] [seqLen] [iterations]}
 */
public final class ForwardBenchmark {
    private ForwardBenchmark() {
    }

    public static void main(String[] args) {
        Path model = Path.of(args[0]);
        Device device = Devices.parse(args.length > 1 ? args[1] : "cpu");
        int batch = args.length > 2 ? Integer.parseInt(args[2]) : 8;
        int seqLen = args.length > 3 ? Integer.parseInt(args[3]) : 256;
        int iters = args.length > 4 ? Integer.parseInt(args[4]) : 5;
        System.out.printf(Locale.ROOT, "engine: %s %s, device %s, threads: %s%n", Engine.getInstance().getEngineName(),
                Engine.getInstance().getVersion(), device, Runtime.getRuntime().availableProcessors());
        for (int n : new int[] {1024, 2048}) {
            System.out.printf(Locale.ROOT, "| GEMM fp32 %dx%dx%d | %.1f GFLOP/s |%n", n, n, n, gemm(device, n, iters) / 1e9);
        }
        try (ModelDir md = ModelDir.open(model); LlamaModel lm = md.loadModel(device);
             NDManager m = NDManager.newBaseManager(device)) {
            ModelConfig c = md.config();
            long[] ids = new long[batch * seqLen];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = (i * 7919L) % c.vocabSize();
            }
            NDArray input = m.create(ids, new Shape(batch, seqLen));
            lm.logits(input).close(); // warm-up
            long t0 = System.nanoTime();
            for (int i = 0; i < iters; i++) {
                lm.logits(input).close();
            }
            double secs = (System.nanoTime() - t0) / 1e9 / iters;
            double tokensPerSec = batch * seqLen / secs;
            double flops = flopsPerToken(c, seqLen) * batch * seqLen / secs;
            System.out.printf(Locale.ROOT, "| forward %s, batch %d x %d tokens | %.0f tokens/s, %.1f GFLOP/s (%s params) |%n",
                    model.getFileName(), batch, seqLen, tokensPerSec, flops / 1e9, ModelStats.parameters(c));
        }
    }

    /** Matmul FLOP/s: 2 n^3 per product, best of {@code iters} after one warm-up. */
    static double gemm(Device device, int n, int iters) {
        try (NDManager m = NDManager.newBaseManager(device)) {
            NDArray a = m.randomNormal(new Shape(n, n));
            NDArray b = m.randomNormal(new Shape(n, n));
            a.matMul(b).close();
            double best = Double.MAX_VALUE;
            for (int i = 0; i < iters; i++) {
                long t0 = System.nanoTime();
                NDArray c = a.matMul(b);
                c.getFloat(0, 0); // forces completion on asynchronous devices
                best = Math.min(best, (System.nanoTime() - t0) / 1e9);
                c.close();
            }
            return 2.0 * n * n * n / best;
        }
    }

    /** Forward FLOPs per token: 2 x (matmul parameters) + attention scores and values (2 x 2 x T/2 x heads x d). */
    static double flopsPerToken(ModelConfig c, int seqLen) {
        double f = 2.0 * c.vocabSize() * c.hiddenSize();
        for (LayerShape s : c.layers()) {
            long matmul = ModelStats.layerParameters(c, s) - 2L * c.hiddenSize();
            f += 2.0 * matmul + 2.0 * 2 * (seqLen / 2.0) * s.numHeads() * c.headDim();
        }
        return f;
    }
}
