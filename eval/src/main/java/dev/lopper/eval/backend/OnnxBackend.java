package dev.lopper.eval.backend;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import dev.lopper.eval.Evaluator;
import dev.lopper.eval.LogSoftmax;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.config.ModelConfig;

import java.nio.FloatBuffer;
import java.nio.LongBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * An ONNX export ({@code model.onnx}, docs/EXPORT.md) run by ONNX Runtime's Java API on the CPU. The {@code onnx-kv}
 * variant (inputs {@code past_key_values.<i>.key/value}) decodes with its KV cache, feeding each step's
 * {@code present.*} back; scoring feeds empty pasts. Logits are turned into log-probabilities in double precision.
 *
 * <pre>{@code
 * try (Evaluator ev = new OnnxBackend(Path.of("work/pruned-onnx"), 0)) { ... }
 * }</pre>
 */
public final class OnnxBackend implements Evaluator {
    /** The model file of an ONNX export. */
    public static final String FILE = "model.onnx";

    private final Path dir;
    private final ModelConfig config;
    private final Tokenizer tokenizer;
    private final OrtEnvironment env = OrtEnvironment.getEnvironment();
    private final OrtSession session;
    /** past input name -> [kv_heads, head_dim], empty for the plain variant */
    private final Map<String, long[]> pasts = new LinkedHashMap<>();

    /** @param threads intra-op threads, 0 for ONNX Runtime's default */
    public OnnxBackend(Path dir, int threads) {
        this.dir = dir;
        this.config = ModelConfig.load(dir);
        this.tokenizer = Tokenizer.load(dir);
        try (OrtSession.SessionOptions opts = new OrtSession.SessionOptions()) {
            if (threads > 0) {
                opts.setIntraOpNumThreads(threads);
            }
            session = env.createSession(dir.resolve(FILE).toString(), opts);
            for (Map.Entry<String, NodeInfo> e : session.getInputInfo().entrySet()) {
                if (e.getKey().startsWith("past_key_values.")) {
                    long[] shape = ((TensorInfo) e.getValue().getInfo()).getShape();
                    pasts.put(e.getKey(), new long[] {shape[1], shape[3]});
                }
            }
        } catch (OrtException e) {
            tokenizer.close();
            throw ModelFormatException.file(dir.resolve(FILE), "ONNX Runtime cannot load it: " + e.getMessage());
        }
    }

    @Override
    public String backend() {
        return pasts.isEmpty() ? "onnx" : "onnx-kv";
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
        return "onnxruntime cpu";
    }

    /**
     * Runs ids [b, len] after a past of {@code pastLen} tokens ({@code past} holds the previous result's
     * {@code present.*}, or null for empty pasts); returns the result, which the caller closes.
     */
    private OrtSession.Result run(long[] flat, int b, int len, int pastLen, OrtSession.Result past) throws OrtException {
        Map<String, OnnxTensor> in = new HashMap<>();
        Map<String, OnnxTensor> owned = new HashMap<>();
        try {
            owned.put("input_ids", OnnxTensor.createTensor(env, LongBuffer.wrap(flat), new long[] {b, len}));
            long[] mask = new long[b * (pastLen + len)];
            Arrays.fill(mask, 1);
            owned.put("attention_mask", OnnxTensor.createTensor(env, LongBuffer.wrap(mask), new long[] {b, pastLen + len}));
            for (Map.Entry<String, long[]> p : pasts.entrySet()) {
                String present = "present." + p.getKey().substring("past_key_values.".length());
                Optional<OnnxValue> prev = past == null ? Optional.empty() : past.get(present);
                if (prev.isPresent()) {
                    in.put(p.getKey(), (OnnxTensor) prev.get());
                } else {
                    long[] shape = {b, p.getValue()[0], 0, p.getValue()[1]};
                    owned.put(p.getKey(), OnnxTensor.createTensor(env, FloatBuffer.allocate(0), shape));
                }
            }
            in.putAll(owned);
            return session.run(in);
        } finally {
            owned.values().forEach(OnnxTensor::close);
        }
    }

    private static float[] logits(OrtSession.Result r) throws OrtException {
        FloatBuffer fb = ((OnnxTensor) r.get("logits").orElseThrow()).getFloatBuffer();
        float[] a = new float[fb.remaining()];
        fb.get(a);
        return a;
    }

    @Override
    public double[][] logProbs(long[][] windows) {
        int b = windows.length;
        int len = windows[0].length;
        long[] flat = new long[b * len];
        for (int i = 0; i < b; i++) {
            System.arraycopy(windows[i], 0, flat, i * len, len);
        }
        try (OrtSession.Result r = run(flat, b, len, 0, null)) {
            return LogSoftmax.windows(logits(r), windows, config.vocabSize());
        } catch (OrtException e) {
            throw new IllegalStateException(dir.resolve(FILE) + ": ONNX Runtime failed: " + e.getMessage(), e);
        }
    }

    @Override
    public DecodeTiming decode(long[] prompt, int steps) {
        long[] tokens = Arrays.copyOf(prompt, prompt.length + steps);
        int vocab = config.vocabSize();
        double prefill = 0;
        long start = System.nanoTime();
        OrtSession.Result past = null;
        try {
            for (int s = 0; s < steps; s++) {
                int len = prompt.length + s;
                OrtSession.Result r;
                int rows;
                if (pasts.isEmpty()) {
                    r = run(Arrays.copyOf(tokens, len), 1, len, 0, null);
                    rows = len;
                } else if (s == 0) {
                    r = run(prompt.clone(), 1, len, 0, null);
                    rows = len;
                } else {
                    r = run(new long[] {tokens[len - 1]}, 1, 1, len - 1, past);
                    rows = 1;
                }
                tokens[len] = LogSoftmax.argmax(logits(r), rows - 1, vocab);
                if (past != null) {
                    past.close();
                }
                past = r;
                if (s == 0) {
                    prefill = (System.nanoTime() - start) / 1e9;
                }
            }
        } catch (OrtException e) {
            throw new IllegalStateException(dir.resolve(FILE) + ": ONNX Runtime failed: " + e.getMessage(), e);
        } finally {
            if (past != null) {
                past.close();
            }
        }
        double total = (System.nanoTime() - start) / 1e9;
        return new DecodeTiming(prefill, total - prefill, steps, tokens);
    }

    @Override
    public boolean kvCache() {
        return !pasts.isEmpty();
    }

    @Override
    public void close() {
        try {
            session.close();
        } catch (OrtException e) {
            throw new IllegalStateException(e);
        } finally {
            tokenizer.close();
        }
    }
}
