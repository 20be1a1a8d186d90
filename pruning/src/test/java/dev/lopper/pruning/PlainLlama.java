package dev.lopper.pruning;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

/**
 * A plain-loop LLaMA forward pass in double precision, written from the HF modeling code and not from Lopper's
 * {@code LayerSpec}/{@code Decoder}: the independent reference of the hidden-dimension invariants. It reads the
 * DENSE model's weights and runs the residual stream over a chosen set of channels:
 * <ul>
 *   <li>{@link Mode#DROPPED}: the stream holds only the kept channels; every weight is indexed by them (embedding
 *       and LM-head columns, norm entries, q/k/v/gate/up columns, o/down rows) and each RMSNorm is the mean over
 *       the kept channels. This is what hidden pruning with the norms kept as they are must equal.</li>
 *   <li>{@link Mode#ZEROED}: the stream keeps all d channels and the removed ones are held at zero (embedding
 *       columns and o/down rows and biases zeroed); each RMSNorm is the mean over all d. This is the dense model with
 *       the channels "removed = zeroed", which hidden pruning with the rescaled norms must equal.</li>
 * </ul>
 * Layers with zero heads (or channels) skip their attention (or MLP); o/down biases are added when present.
 */
public final class PlainLlama {
    public enum Mode { DROPPED, ZEROED }

    private PlainLlama() {
    }

    /** Logits [T][vocab] of one sequence. */
    public static double[][] logits(ModelConfig c, TensorSource w, int[] keptHidden, Mode mode, long[] ids) {
        return trace(c, w, keptHidden, mode, ids, -1, null).logits();
    }

    /** Which part of a layer a {@link #trace} leaves out. */
    public enum Drop { LAYER, ATTENTION, MLP }

    /**
     * One sequence through the model.
     *
     * @param stream [l][T][channels]: the residual stream before layer l (l = 0..L; L = before the final norm)
     * @param mid [l][T][channels]: after layer l's attention
     */
    public record Trace(double[][][] stream, double[][][] mid, double[][] logits) {
    }

    /** The whole stream of one sequence, with part of layer {@code dropLayer} left out as {@code drop} says (-1: none). */
    public static Trace trace(ModelConfig c, TensorSource w, int[] keptHidden, Mode mode, long[] ids, int dropLayer, Drop drop) {
        int d = c.hiddenSize();
        boolean[] keep = new boolean[d];
        for (int k : keptHidden) {
            keep[k] = true;
        }
        // stream channel j -> original channel idx[j]
        int[] idx = mode == Mode.DROPPED ? keptHidden.clone() : range(d);
        int n = idx.length;
        int t = ids.length;
        try (NDManager m = NDManager.newBaseManager()) {
            double[][] embed = mat(w, WeightNames.EMBED, m);
            double[][] x = new double[t][n];
            for (int p = 0; p < t; p++) {
                for (int j = 0; j < n; j++) {
                    x[p][j] = embed[(int) ids[p]][idx[j]];
                }
            }
            mask(x, idx, keep, mode);
            int hd = c.headDim();
            double[] inv = c.ropeScaling().inverseFrequencies(hd, c.ropeTheta());
            double[][][] stream = new double[c.numLayers() + 1][][];
            double[][][] mids = new double[c.numLayers()][][];
            for (int l = 0; l < c.numLayers(); l++) {
                stream[l] = copy(x);
                LayerShape s = c.layer(l);
                boolean noAttn = l == dropLayer && (drop == Drop.LAYER || drop == Drop.ATTENTION);
                boolean noMlp = l == dropLayer && (drop == Drop.LAYER || drop == Drop.MLP);
                if (noAttn) {
                    // nothing: the attention is gone
                } else if (s.numHeads() > 0) {
                    double[][] h = norm(x, vec(w, WeightNames.inputNorm(l), m), idx, c.rmsNormEps());
                    double[][] q = proj(h, mat(w, WeightNames.attn(l, "q_proj", "weight"), m), idx, optVec(w, WeightNames.attn(l, "q_proj", "bias"), m));
                    double[][] k = proj(h, mat(w, WeightNames.attn(l, "k_proj", "weight"), m), idx, optVec(w, WeightNames.attn(l, "k_proj", "bias"), m));
                    double[][] v = proj(h, mat(w, WeightNames.attn(l, "v_proj", "weight"), m), idx, optVec(w, WeightNames.attn(l, "v_proj", "bias"), m));
                    if (c.family().hasQkNorm()) {
                        headNorm(q, s.numHeads(), hd, vec(w, WeightNames.qNorm(l), m), c.rmsNormEps());
                        headNorm(k, s.numKvHeads(), hd, vec(w, WeightNames.kNorm(l), m), c.rmsNormEps());
                    }
                    rope(q, s.numHeads(), hd, inv);
                    rope(k, s.numKvHeads(), hd, inv);
                    double[][] a = attention(q, k, v, s.numHeads(), s.numKvHeads(), hd);
                    double[][] o = mat(w, WeightNames.attn(l, "o_proj", "weight"), m);
                    double[] ob = optVec(w, WeightNames.attn(l, "o_proj", "bias"), m);
                    addOut(x, a, o, ob, idx);
                } else if (w.has(WeightNames.attn(l, "o_proj", "bias"))) {
                    addOut(x, new double[t][0], new double[d][0], vec(w, WeightNames.attn(l, "o_proj", "bias"), m), idx);
                }
                mask(x, idx, keep, mode);
                mids[l] = copy(x);
                if (noMlp) {
                    // nothing: the MLP is gone
                } else if (s.intermediateSize() > 0) {
                    double[][] h = norm(x, vec(w, WeightNames.postAttentionNorm(l), m), idx, c.rmsNormEps());
                    double[][] g = proj(h, mat(w, WeightNames.mlp(l, "gate_proj", "weight"), m), idx, null);
                    double[][] u = proj(h, mat(w, WeightNames.mlp(l, "up_proj", "weight"), m), idx, null);
                    for (int p = 0; p < t; p++) {
                        for (int i = 0; i < g[p].length; i++) {
                            g[p][i] = g[p][i] / (1 + Math.exp(-g[p][i])) * u[p][i];
                        }
                    }
                    addOut(x, g, mat(w, WeightNames.mlp(l, "down_proj", "weight"), m), optVec(w, WeightNames.mlp(l, "down_proj", "bias"), m), idx);
                } else if (w.has(WeightNames.mlp(l, "down_proj", "bias"))) {
                    addOut(x, new double[t][0], new double[d][0], vec(w, WeightNames.mlp(l, "down_proj", "bias"), m), idx);
                }
                mask(x, idx, keep, mode);
            }
            stream[c.numLayers()] = copy(x);
            double[][] h = norm(x, vec(w, WeightNames.FINAL_NORM, m), idx, c.rmsNormEps());
            double[][] head = w.has(WeightNames.LM_HEAD) ? mat(w, WeightNames.LM_HEAD, m) : embed;
            double[][] out = new double[t][c.vocabSize()];
            for (int p = 0; p < t; p++) {
                for (int r = 0; r < c.vocabSize(); r++) {
                    double acc = 0;
                    for (int j = 0; j < n; j++) {
                        acc += head[r][idx[j]] * h[p][j];
                    }
                    out[p][r] = acc;
                }
            }
            return new Trace(stream, mids, out);
        }
    }

    private static double[][] copy(double[][] x) {
        double[][] out = new double[x.length][];
        for (int i = 0; i < x.length; i++) {
            out[i] = x[i].clone();
        }
        return out;
    }

    private static void mask(double[][] x, int[] idx, boolean[] keep, Mode mode) {
        if (mode == Mode.ZEROED) {
            for (double[] row : x) {
                for (int j = 0; j < idx.length; j++) {
                    if (!keep[idx[j]]) {
                        row[j] = 0;
                    }
                }
            }
        }
    }

    /** x * rsqrt(mean over the stream's channels of x^2 + eps) * weight. */
    private static double[][] norm(double[][] x, double[] weight, int[] idx, double eps) {
        double[][] out = new double[x.length][idx.length];
        for (int p = 0; p < x.length; p++) {
            double ss = 0;
            for (double v : x[p]) {
                ss += v * v;
            }
            double r = 1 / Math.sqrt(ss / idx.length + eps);
            for (int j = 0; j < idx.length; j++) {
                out[p][j] = x[p][j] * r * weight[idx[j]];
            }
        }
        return out;
    }

    /** y = W[:, idx] h + b. */
    private static double[][] proj(double[][] h, double[][] wt, int[] idx, double[] b) {
        double[][] out = new double[h.length][wt.length];
        for (int p = 0; p < h.length; p++) {
            for (int r = 0; r < wt.length; r++) {
                double acc = b == null ? 0 : b[r];
                for (int j = 0; j < idx.length; j++) {
                    acc += wt[r][idx[j]] * h[p][j];
                }
                out[p][r] = acc;
            }
        }
        return out;
    }

    /** x[:, j] += (W[idx[j], :] a) + b[idx[j]]. */
    private static void addOut(double[][] x, double[][] a, double[][] wt, double[] b, int[] idx) {
        for (int p = 0; p < x.length; p++) {
            for (int j = 0; j < idx.length; j++) {
                double acc = b == null ? 0 : b[idx[j]];
                double[] row = wt[idx[j]];
                for (int i = 0; i < a[p].length; i++) {
                    acc += row[i] * a[p][i];
                }
                x[p][j] += acc;
            }
        }
    }

    private static void headNorm(double[][] x, int heads, int hd, double[] weight, double eps) {
        for (double[] row : x) {
            for (int h = 0; h < heads; h++) {
                double ss = 0;
                for (int i = 0; i < hd; i++) {
                    ss += row[h * hd + i] * row[h * hd + i];
                }
                double r = 1 / Math.sqrt(ss / hd + eps);
                for (int i = 0; i < hd; i++) {
                    row[h * hd + i] = row[h * hd + i] * r * weight[i];
                }
            }
        }
    }

    /** HF's rotate_half RoPE: the two halves of each head rotate together, angle = position x inv_freq. */
    private static void rope(double[][] x, int heads, int hd, double[] inv) {
        int half = hd / 2;
        for (int p = 0; p < x.length; p++) {
            for (int h = 0; h < heads; h++) {
                for (int i = 0; i < half; i++) {
                    double ang = (float) p * (float) inv[i]; // HF computes the angle in fp32
                    double cs = Math.cos((float) ang);
                    double sn = Math.sin((float) ang);
                    double a = x[p][h * hd + i];
                    double b = x[p][h * hd + i + half];
                    x[p][h * hd + i] = a * cs - b * sn;
                    x[p][h * hd + i + half] = b * cs + a * sn;
                }
            }
        }
    }

    /** Causal softmax attention; query head j reads KV head j / (heads / kvHeads). */
    private static double[][] attention(double[][] q, double[][] k, double[][] v, int heads, int kvHeads, int hd) {
        int t = q.length;
        int g = heads / kvHeads;
        double[][] out = new double[t][heads * hd];
        for (int h = 0; h < heads; h++) {
            int kh = h / g;
            for (int p = 0; p < t; p++) {
                double[] s = new double[p + 1];
                double max = Double.NEGATIVE_INFINITY;
                for (int r = 0; r <= p; r++) {
                    double acc = 0;
                    for (int i = 0; i < hd; i++) {
                        acc += q[p][h * hd + i] * k[r][kh * hd + i];
                    }
                    s[r] = acc / Math.sqrt(hd);
                    max = Math.max(max, s[r]);
                }
                double z = 0;
                for (int r = 0; r <= p; r++) {
                    s[r] = Math.exp(s[r] - max);
                    z += s[r];
                }
                for (int r = 0; r <= p; r++) {
                    for (int i = 0; i < hd; i++) {
                        out[p][h * hd + i] += s[r] / z * v[r][kh * hd + i];
                    }
                }
            }
        }
        return out;
    }

    public static double[][] mat(TensorSource w, String name, NDManager m) {
        NDArray a = w.load(name, m);
        long rows = a.getShape().get(0);
        long cols = a.getShape().get(1);
        float[] f = a.toFloatArray();
        double[][] out = new double[(int) rows][(int) cols];
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < cols; j++) {
                out[r][j] = f[(int) (r * cols + j)];
            }
        }
        a.close();
        return out;
    }

    public static double[] vec(TensorSource w, String name, NDManager m) {
        NDArray a = w.load(name, m);
        float[] f = a.toFloatArray();
        a.close();
        double[] out = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            out[i] = f[i];
        }
        return out;
    }

    private static double[] optVec(TensorSource w, String name, NDManager m) {
        return w.has(name) ? vec(w, name, m) : null;
    }

    private static int[] range(int n) {
        int[] r = new int[n];
        for (int i = 0; i < n; i++) {
            r[i] = i;
        }
        return r;
    }
}
