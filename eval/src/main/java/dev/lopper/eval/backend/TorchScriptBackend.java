package dev.lopper.eval.backend;

import ai.djl.Device;
import ai.djl.MalformedModelException;
import ai.djl.Model;
import ai.djl.inference.Predictor;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.translate.NoopTranslator;
import ai.djl.translate.TranslateException;
import dev.lopper.eval.Evaluator;
import dev.lopper.model.Devices;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.config.ModelConfig;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * A TorchScript export ({@code model.pt}, see docs/EXPORT.md) loaded by libtorch through DJL's PyTorch engine.
 * The archive's {@code forward(input_ids)} has no KV cache, so decoding reruns the whole sequence each step.
 *
 * <pre>{@code
 * try (Evaluator ev = new TorchScriptBackend(Path.of("work/pruned-ts"), Device.cpu())) { ... }
 * }</pre>
 */
public final class TorchScriptBackend implements Evaluator {
    private final Path dir;
    private final ModelConfig config;
    private final Tokenizer tokenizer;
    private final Model model;
    private final Predictor<NDList, NDList> predictor;

    public TorchScriptBackend(Path dir, Device device) {
        this.dir = dir;
        this.config = ModelConfig.load(dir);
        this.tokenizer = Tokenizer.load(dir);
        this.model = Model.newInstance("lopper", device, "PyTorch");
        try {
            model.load(dir, "model");
        } catch (IOException | MalformedModelException | RuntimeException e) {
            model.close();
            tokenizer.close();
            throw ModelFormatException.file(dir.resolve("model.pt"), "cannot load as TorchScript: " + e.getMessage());
        }
        this.predictor = model.newPredictor(new NoopTranslator());
    }

    @Override
    public String backend() {
        return "torchscript";
    }

    @Override
    public Path modelDir() {
        return dir;
    }

    @Override
    public ModelConfig config() {
        return config;
    }

    @Override
    public Tokenizer tokenizer() {
        return tokenizer;
    }

    @Override
    public String device() {
        return "libtorch via DJL " + Devices.name(model.getNDManager().getDevice());
    }

    /** Logits [b, len, vocab] as float64, in {@code scope}. */
    private NDArray logits(NDManager scope, long[] flat, int b, int len) {
        NDArray x = scope.create(flat, new Shape(b, len));
        try {
            NDList out = predictor.predict(new NDList(x));
            out.attach(scope);
            return out.singletonOrThrow().toType(DataType.FLOAT64, false);
        } catch (TranslateException e) {
            throw new IllegalStateException(dir.resolve("model.pt") + ": forward failed: " + e.getMessage(), e);
        }
    }

    @Override
    public double[][] logProbs(long[][] windows) {
        int b = windows.length;
        int len = windows[0].length;
        long[] flat = new long[b * len];
        for (int i = 0; i < b; i++) {
            System.arraycopy(windows[i], 0, flat, i * len, len);
        }
        try (NDManager scope = model.getNDManager().newSubManager()) {
            NDArray lp = logits(scope, flat, b, len).get(new NDIndex(":, :-1, :")).logSoftmax(-1);
            NDArray targets = scope.create(flat, new Shape(b, len)).get(new NDIndex(":, 1:")).expandDims(-1);
            double[] d = lp.gather(targets, -1).toDoubleArray();
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
        for (int s = 0; s < steps; s++) {
            int len = prompt.length + s;
            try (NDManager scope = model.getNDManager().newSubManager()) {
                NDArray last = logits(scope, Arrays.copyOf(tokens, len), 1, len).get(0, len - 1);
                tokens[len] = last.argMax().getLong();
            }
            if (s == 0) {
                prefill = (System.nanoTime() - start) / 1e9;
            }
        }
        double total = (System.nanoTime() - start) / 1e9;
        return new DecodeTiming(prefill, total - prefill, steps, tokens);
    }

    @Override
    public boolean kvCache() {
        return false;
    }

    @Override
    public void close() {
        try {
            predictor.close();
            model.close();
        } finally {
            tokenizer.close();
        }
    }
}
