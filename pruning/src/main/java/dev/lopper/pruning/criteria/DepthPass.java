package dev.lopper.pruning.criteria;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.Decoder;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.Masks;
import dev.lopper.model.Rope;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Layer-streamed forward passes for the depth criteria (block influence, LM loss with a layer dropped, angular
 * distance): one decoder layer's weights in memory at a time, the calibration windows' hidden states carried from
 * layer to layer in chunks. A layer's attention alone is {@code x + attn(x)}: the layer run with 0 MLP channels; its
 * MLP dropped is the same; its attention dropped is the layer with 0 heads: exactly the layers surgery writes for
 * sublayer removal (o_proj/down_proj compensation biases stay with their layer, as there).
 */
final class DepthPass {
    private DepthPass() {
    }

    /**
     * What one dense pass measures.
     *
     * @param cosine [layer] sum over tokens of 1 - cos(x_in, x_out) (0.5 where undefined: ShortGPT's nan_to_num)
     * @param cosineSub [layer][attention, MLP]: the same for x -> x + attn(x) and for that -> the layer's output
     * @param last [l][window][hidden] the stream at the LAST token of each window before layer l (l = 0..L, L = after
     *             the last layer, before the final norm)
     * @param lastMid [l][window][hidden] the stream at the last token after layer l's attention
     * @param tokens tokens per sum
     */
    record Dense(double[] cosine, double[][] cosineSub, float[][][] last, float[][][] lastMid, long tokens) {
    }

    /** What runs in place of a layer in a loss pass. */
    enum Drop { LAYER, ATTENTION, MLP }

    static Dense dense(ModelConfig c, TensorSource w, Device device, long[][] windows, int chunkTokens, Consumer<String> progress) {
        int n = c.numLayers();
        int s = windows.length;
        int t = windows[0].length;
        double[] cos = new double[n];
        double[][] sub = new double[n][2];
        float[][][] last = new float[n + 1][][];
        float[][][] lastMid = new float[n][][];
        try (NDManager m = NDManager.newBaseManager(device)) {
            List<NDArray> chunks = embed(c, w, m, windows, chunkTokens);
            last[0] = lastTokens(chunks, c.hiddenSize());
            NDList rope = new Rope(c).tables(m, 0, t);
            NDArray mask = Masks.causal(m, t, c.slidingWindow(), null);
            for (int l = 0; l < n; l++) {
                progress.accept("depth: layer " + (l + 1) + "/" + n);
                try (NDManager lm = m.newSubManager()) {
                    LayerWeights lw = LayerWeights.load(w, c, l, lm);
                    LayerWeights attnOnly = reshaped(lw, withoutMlp(lw.shape()));
                    List<NDArray> mids = new ArrayList<>();
                    List<NDArray> outs = new ArrayList<>();
                    for (NDArray x : chunks) {
                        try (NDManager cs = m.newSubManager()) {
                            x.tempAttach(cs); // the layer's intermediates go with the chunk's scope
                            NDArray mid = run(attnOnly, x, rope, mask, c);
                            NDArray out = run(lw, x, rope, mask, c);
                            cos[l] += oneMinusCos(x, out);
                            sub[l][0] += oneMinusCos(x, mid);
                            sub[l][1] += oneMinusCos(mid, out);
                            mid.attach(m);
                            out.attach(m);
                            mids.add(mid);
                            outs.add(out);
                        }
                    }
                    lastMid[l] = lastTokens(mids, c.hiddenSize());
                    for (NDArray x : chunks) {
                        x.close();
                    }
                    for (NDArray x : mids) {
                        x.close();
                    }
                    chunks = outs;
                }
                last[l + 1] = lastTokens(chunks, c.hiddenSize());
            }
        }
        return new Dense(cos, sub, last, lastMid, (long) s * t);
    }

    /**
     * Mean next-token cross-entropy (nats) over every window's predictions, with layer {@code layer} replaced as
     * {@code drop} says ({@code layer} -1: the dense model).
     */
    static double loss(ModelConfig c, TensorSource w, Device device, long[][] windows, int chunkTokens, int layer, Drop drop) {
        int t = windows[0].length;
        try (NDManager m = NDManager.newBaseManager(device)) {
            List<NDArray> chunks = embed(c, w, m, windows, chunkTokens);
            NDList rope = new Rope(c).tables(m, 0, t);
            NDArray mask = Masks.causal(m, t, c.slidingWindow(), null);
            for (int l = 0; l < c.numLayers(); l++) {
                if (l == layer && drop == Drop.LAYER) {
                    continue;
                }
                try (NDManager lm = m.newSubManager()) {
                    LayerWeights lw = LayerWeights.load(w, c, l, lm);
                    if (l == layer) {
                        lw = reshaped(lw, drop == Drop.ATTENTION ? withoutAttention(lw.shape()) : withoutMlp(lw.shape()));
                    }
                    List<NDArray> outs = new ArrayList<>();
                    for (NDArray x : chunks) {
                        try (NDManager cs = m.newSubManager()) {
                            x.tempAttach(cs);
                            NDArray out = run(lw, x, rope, mask, c);
                            out.attach(m);
                            outs.add(out);
                        }
                        x.close();
                    }
                    chunks = outs;
                }
            }
            NDArray norm = w.load(WeightNames.FINAL_NORM, m);
            NDArray head = w.load(WeightNames.head(c, w), m);
            double sum = 0;
            long count = 0;
            int b0 = 0;
            int v = c.vocabSize();
            for (NDArray x : chunks) {
                int b = (int) x.getShape().get(0);
                try (NDManager cm = m.newSubManager()) {
                    x.tempAttach(cm);
                    NDArray logits = Decoder.linear(Decoder.rmsNorm(x, norm, c.rmsNormEps()), head, null);
                    float[] lp = logits.logSoftmax(-1).toFloatArray();
                    for (int i = 0; i < b; i++) {
                        long[] ids = windows[b0 + i];
                        for (int p = 0; p + 1 < t; p++) {
                            sum -= lp[(i * t + p) * v + (int) ids[p + 1]];
                            count++;
                        }
                    }
                }
                b0 += b;
            }
            return sum / count;
        }
    }

    private static NDArray run(LayerWeights lw, NDArray x, NDList rope, NDArray mask, ModelConfig c) {
        return Decoder.layer(lw, x, rope.get(0), rope.get(1), mask, c.rmsNormEps(), c.headDim(), LayerHooks.NONE);
    }

    /** The embeddings of every window, [B, T, hidden] per chunk of max(1, chunkTokens / T) windows. */
    private static List<NDArray> embed(ModelConfig c, TensorSource w, NDManager m, long[][] windows, int chunkTokens) {
        int t = windows[0].length;
        int chunk = Math.max(1, Math.min(windows.length, chunkTokens / t));
        List<NDArray> out = new ArrayList<>();
        for (int s = 0; s < windows.length; s += chunk) {
            int b = Math.min(chunk, windows.length - s);
            long[] ids = new long[b * t];
            for (int i = 0; i < b; i++) {
                System.arraycopy(windows[s + i], 0, ids, i * t, t);
            }
            out.add(w.loadRows(WeightNames.EMBED, ids, m, DataType.FLOAT32).reshape(b, t, c.hiddenSize()));
        }
        return out;
    }

    /** Sum over the chunk's tokens of 1 - cos(a, b), a NaN cosine counted as 0.5 (ShortGPT's nan_to_num). */
    private static double oneMinusCos(NDArray a, NDArray b) {
        try (NDManager scope = a.getManager().newSubManager()) {
            NDArray x = a.toType(DataType.FLOAT64, true);
            NDArray y = b.toType(DataType.FLOAT64, true);
            x.attach(scope);
            y.attach(scope);
            double[] dot = x.mul(y).sum(new int[] {-1}).toDoubleArray();
            double[] nn = x.norm(new int[] {-1}).mul(y.norm(new int[] {-1})).toDoubleArray();
            double sum = 0;
            for (int i = 0; i < dot.length; i++) {
                double cs = dot[i] / nn[i];
                sum += 1 - (Double.isNaN(cs) ? 0.5 : cs);
            }
            return sum;
        }
    }

    /** [window][hidden]: each window's last token. */
    private static float[][] lastTokens(List<NDArray> chunks, int hidden) {
        List<float[]> rows = new ArrayList<>();
        for (NDArray x : chunks) {
            Shape s = x.getShape();
            int b = (int) s.get(0);
            int t = (int) s.get(1);
            float[] f = x.toFloatArray();
            for (int i = 0; i < b; i++) {
                float[] r = new float[hidden];
                System.arraycopy(f, (i * t + t - 1) * hidden, r, 0, hidden);
                rows.add(r);
            }
        }
        return rows.toArray(new float[0][]);
    }

    static LayerShape withoutAttention(LayerShape s) {
        return new LayerShape(0, 0, s.intermediateSize(), s.oProjBias(), s.downProjBias());
    }

    static LayerShape withoutMlp(LayerShape s) {
        return new LayerShape(s.numHeads(), s.numKvHeads(), 0, s.oProjBias(), s.downProjBias());
    }

    /** The same weights run as a layer of {@code shape} (the decoder reads only what the shape's ops use). */
    private static LayerWeights reshaped(LayerWeights w, LayerShape shape) {
        return new LayerWeights(w.index(), shape, w.inputNorm(), w.q(), w.qBias(), w.k(), w.kBias(), w.v(), w.vBias(), w.o(),
                w.oBias(), w.postNorm(), w.gate(), w.up(), w.down(), w.downBias(), w.qNorm(), w.kNorm());
    }

    /** Angular distance arccos(cos(a, b)) / pi of two vectors (cos clamped to [-1, 1]; 0.5 where undefined). */
    static double angular(float[] a, float[] b) {
        double dot = 0;
        double na = 0;
        double nb = 0;
        for (int i = 0; i < a.length; i++) {
            dot += (double) a[i] * b[i];
            na += (double) a[i] * a[i];
            nb += (double) b[i] * b[i];
        }
        double cs = dot / Math.sqrt(na * nb);
        if (Double.isNaN(cs)) {
            return 0.5;
        }
        return Math.acos(Math.max(-1, Math.min(1, cs))) / Math.PI;
    }

    /** Mean over windows of the angular distance between {@code a[w]} and {@code b[w]}. */
    static double meanAngular(float[][] a, float[][] b) {
        double sum = 0;
        for (int i = 0; i < a.length; i++) {
            sum += angular(a[i], b[i]);
        }
        return sum / a.length;
    }
}
