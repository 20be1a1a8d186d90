package dev.lopper.export;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;

import java.nio.FloatBuffer;
import java.nio.LongBuffer;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** An exported ONNX model in ONNX Runtime (Java API), run on plain arrays. */
final class Ort implements AutoCloseable {
    private final OrtEnvironment env = OrtEnvironment.getEnvironment();
    private final OrtSession session;

    Ort(Path modelFile, int threads) throws OrtException {
        this(modelFile, threads, null);
    }

    /** @param profilePrefix where ONNX Runtime writes a per-node profile (see {@link #endProfiling}), or null */
    Ort(Path modelFile, int threads, Path profilePrefix) throws OrtException {
        try (OrtSession.SessionOptions opts = new OrtSession.SessionOptions()) {
            if (threads > 0) {
                opts.setIntraOpNumThreads(threads);
            }
            if (profilePrefix != null) {
                opts.enableProfiling(profilePrefix.toString());
            }
            session = env.createSession(modelFile.toString(), opts);
        }
    }

    /** Runs prepared tensors (kept by the caller, reusable across calls), fetching only {@code outputs}. */
    void runPrepared(Map<String, OnnxTensor> inputs, java.util.Set<String> outputs) throws OrtException {
        session.run(inputs, outputs).close();
    }

    /** A float tensor the caller closes. */
    OnnxTensor floatTensor(float[] data, long[] shape) throws OrtException {
        return OnnxTensor.createTensor(env, FloatBuffer.wrap(data), shape);
    }

    /** An int64 tensor the caller closes. */
    OnnxTensor longTensor(long[][] data) throws OrtException {
        return longs(data);
    }

    /** Stops profiling; returns the profile file (Chrome trace JSON). */
    Path endProfiling() throws OrtException {
        return Path.of(session.endProfiling());
    }

    Map<String, NodeInfo> inputs() throws OrtException {
        return session.getInputInfo();
    }

    /** The float outputs by name, flattened, for inputs given as long[][] (ids, mask) and float tensors. */
    Map<String, float[]> run(long[][] ids, long[][] mask, Map<String, float[]> floats, Map<String, long[]> floatShapes)
            throws OrtException {
        return run(ids, mask, floats, floatShapes, null);
    }

    /** As above, fetching only {@code outputs} (all when null). */
    Map<String, float[]> run(long[][] ids, long[][] mask, Map<String, float[]> floats, Map<String, long[]> floatShapes,
                             java.util.Set<String> outputs) throws OrtException {
        Map<String, OnnxTensor> in = new HashMap<>();
        try {
            in.put("input_ids", longs(ids));
            in.put("attention_mask", longs(mask));
            for (Map.Entry<String, float[]> e : floats.entrySet()) {
                in.put(e.getKey(), OnnxTensor.createTensor(env, FloatBuffer.wrap(e.getValue()), floatShapes.get(e.getKey())));
            }
            Map<String, float[]> out = new LinkedHashMap<>();
            try (OrtSession.Result r = outputs == null ? session.run(in) : session.run(in, outputs)) {
                for (Map.Entry<String, OnnxValue> e : r) {
                    OnnxTensor t = (OnnxTensor) e.getValue();
                    FloatBuffer fb = t.getFloatBuffer();
                    float[] a = new float[fb.remaining()];
                    fb.get(a);
                    out.put(e.getKey(), a);
                }
            }
            return out;
        } finally {
            in.values().forEach(OnnxTensor::close);
        }
    }

    float[] logits(long[][] ids, long[][] mask) throws OrtException {
        return run(ids, mask, Map.of(), Map.of()).get("logits");
    }

    /** Shape of an input, with -1 for symbolic dims. */
    long[] inputShape(String name) throws OrtException {
        return ((TensorInfo) session.getInputInfo().get(name).getInfo()).getShape();
    }

    List<String> inputNames() throws OrtException {
        return List.copyOf(session.getInputNames());
    }

    private OnnxTensor longs(long[][] a) throws OrtException {
        return OnnxTensor.createTensor(env, LongBuffer.wrap(Reference.flat(a)), new long[] {a.length, a[0].length});
    }

    static long[][] ones(int b, int t) {
        long[][] m = new long[b][t];
        for (long[] row : m) {
            java.util.Arrays.fill(row, 1);
        }
        return m;
    }

    @Override
    public void close() throws OrtException {
        session.close();
    }
}
