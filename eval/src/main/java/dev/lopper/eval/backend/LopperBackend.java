package dev.lopper.eval.backend;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.eval.Evaluator;
import dev.lopper.model.Devices;
import dev.lopper.model.KvCache;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.config.ModelConfig;

import java.nio.file.Path;
import java.util.Arrays;

/**
 * A Lopper model directory (config.json, safetensors, tokenizer.json) run by Lopper's own forward pass (DJL,
 * PyTorch engine); decoding keeps a {@link KvCache}.
 *
 * <pre>{@code
 * try (Evaluator ev = new LopperBackend(Path.of("fixtures/lopper-tiny"), Device.cpu())) { ... }
 * }</pre>
 */
public final class LopperBackend implements Evaluator {
    private final ModelDir dir;
    private final LlamaModel model;

    public LopperBackend(Path path, Device device) {
        this.dir = ModelDir.open(path);
        try {
            this.model = dir.loadModel(device);
        } catch (RuntimeException e) {
            dir.close();
            throw e;
        }
    }

    /** The loaded model (the sweep and tests use it directly). */
    public LlamaModel model() {
        return model;
    }

    @Override
    public String backend() {
        return "lopper";
    }

    @Override
    public Path modelDir() {
        return dir.path();
    }

    @Override
    public ModelConfig config() {
        return dir.config();
    }

    @Override
    public Tokenizer tokenizer() {
        return dir.tokenizer();
    }

    @Override
    public String device() {
        return "lopper (DJL " + Devices.name(model.device()) + ")";
    }

    @Override
    public double[][] logProbs(long[][] windows) {
        int b = windows.length;
        int len = windows[0].length;
        long[] flat = new long[b * len];
        for (int i = 0; i < b; i++) {
            System.arraycopy(windows[i], 0, flat, i * len, len);
        }
        try (NDManager m = NDManager.newBaseManager(model.device())) {
            NDArray input = m.create(flat, new Shape(b, len));
            NDArray lp = model.logits(input).get(new NDIndex(":, :-1, :")).toType(DataType.FLOAT64, false).logSoftmax(-1);
            NDArray picked = lp.gather(input.get(new NDIndex(":, 1:")).expandDims(-1), -1);
            double[] d = picked.toDoubleArray();
            double[][] out = new double[b][];
            for (int i = 0; i < b; i++) {
                out[i] = Arrays.copyOfRange(d, i * (len - 1), (i + 1) * (len - 1));
            }
            return out;
        }
    }

    @Override
    public DecodeTiming decode(long[] prompt, int steps) {
        long[] tokens = Arrays.copyOf(prompt, prompt.length + steps);
        double prefill = 0;
        long start = System.nanoTime();
        try (NDManager m = NDManager.newBaseManager(model.device()); KvCache cache = model.newCache()) {
            long[] input = prompt;
            for (int s = 0; s < steps; s++) {
                try (NDManager scope = m.newSubManager()) {
                    NDArray logits = model.logits(scope.create(input, new Shape(1, input.length)), cache);
                    long next = logits.get(0, input.length - 1).argMax().getLong();
                    tokens[prompt.length + s] = next;
                    input = new long[] {next};
                }
                if (s == 0) {
                    prefill = (System.nanoTime() - start) / 1e9;
                }
            }
        }
        double total = (System.nanoTime() - start) / 1e9;
        return new DecodeTiming(prefill, total - prefill, steps, tokens);
    }

    @Override
    public boolean kvCache() {
        return true;
    }

    @Override
    public void close() {
        try {
            model.close();
        } finally {
            dir.close();
        }
    }
}
