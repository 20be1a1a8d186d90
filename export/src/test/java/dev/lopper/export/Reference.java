package dev.lopper.export;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;

import java.nio.file.Path;

/** Lopper's own forward pass ({@code LlamaModel.logits}), the reference every export is compared with. */
final class Reference {
    private Reference() {
    }

    /** Deterministic token ids [batch][len] below {@code vocab}. */
    static long[][] ids(int batch, int len, int vocab, int seed) {
        long[][] ids = new long[batch][len];
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t < len; t++) {
                ids[b][t] = ((long) (t + 1) * (31 + 17 * b) + seed * 7L + b) % vocab;
            }
        }
        return ids;
    }

    static long[] flat(long[][] a) {
        int n = a[0].length;
        long[] out = new long[a.length * n];
        for (int b = 0; b < a.length; b++) {
            System.arraycopy(a[b], 0, out, b * n, n);
        }
        return out;
    }

    /** Logits [B * T * V] (row-major) for ids [B][T], optionally with a padding mask [B][T]. */
    static float[] logits(Path modelDir, long[][] ids, long[][] paddingMask) {
        try (ModelDir md = ModelDir.open(modelDir); LlamaModel model = md.loadModel(Device.cpu());
             NDManager m = NDManager.newBaseManager(Device.cpu())) {
            Shape shape = new Shape(ids.length, ids[0].length);
            NDArray x = m.create(flat(ids), shape);
            NDArray pad = paddingMask == null ? null : m.create(flat(paddingMask), shape);
            return model.logits(x, pad, LayerHooks.NONE).toFloatArray();
        }
    }

    static double maxAbsDiff(float[] a, float[] b) {
        if (a.length != b.length) {
            throw new AssertionError("lengths differ: " + a.length + " vs " + b.length);
        }
        double max = 0;
        for (int i = 0; i < a.length; i++) {
            double diff = Math.abs((double) a[i] - b[i]);
            if (Double.isNaN(diff)) {
                return Double.NaN;
            }
            max = Math.max(max, diff);
        }
        return max;
    }
}
