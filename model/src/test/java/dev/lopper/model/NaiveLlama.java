package dev.lopper.model;

import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import ai.djl.ndarray.NDManager;

import java.util.Arrays;

/**
 * A second forward pass, written with plain loops in double precision straight from the HF formulas, to check
 * {@link Decoder} on generated models (GQA, biases, rope scaling, sliding window, Qwen3's q/k norms, and
 * Phi-3's fused tensors read as stored, when given the raw checkpoint). Slow; tiny models only.
 */
final class NaiveLlama {
    private final ModelConfig c;
    private final TensorSource w;

    NaiveLlama(ModelConfig c, TensorSource w) {
        this.c = c;
        this.w = w;
    }

    private double[] vec(String name) {
        try (NDManager m = NDManager.newBaseManager(ai.djl.Device.cpu())) {
            float[] f = w.load(name, m).toFloatArray();
            double[] d = new double[f.length];
            for (int i = 0; i < f.length; i++) {
                d[i] = f[i];
            }
            return d;
        }
    }

    /** y[o] = sum_i W[o][i] x[i] (+ b[o]) with W stored [out, in]. */
    private static double[] matvec(double[] wt, double[] b, double[] x, int out) {
        int in = x.length;
        double[] y = new double[out];
        for (int o = 0; o < out; o++) {
            double s = b == null ? 0 : b[o];
            for (int i = 0; i < in; i++) {
                s += wt[o * in + i] * x[i];
            }
            y[o] = s;
        }
        return y;
    }

    private double[] rms(double[] x, double[] g) {
        double ss = 0;
        for (double v : x) {
            ss += v * v;
        }
        double r = 1 / Math.sqrt(ss / x.length + c.rmsNormEps());
        double[] y = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            y[i] = x[i] * r * g[i];
        }
        return y;
    }

    private double[] opt(String name) {
        return w.has(name) ? vec(name) : null;
    }

    double[][] logits(long[] ids) {
        int t = ids.length;
        int h = c.hiddenSize();
        int d = c.headDim();
        double[] emb = vec(WeightNames.EMBED);
        double[][] x = new double[t][h];
        for (int p = 0; p < t; p++) {
            System.arraycopy(emb, (int) ids[p] * h, x[p], 0, h);
        }
        double[] inv = c.ropeScaling().inverseFrequencies(d, c.ropeTheta());
        for (int l = 0; l < c.numLayers(); l++) {
            LayerShape s = c.layer(l);
            double[] wq;
            double[] wk;
            double[] wv;
            if (w.has(WeightNames.qkv(l))) {
                // Phi-3's fused layout, read as stored: q rows, then k rows, then v rows
                double[] all = vec(WeightNames.qkv(l));
                int qn = s.numHeads() * d * h;
                int kn = s.numKvHeads() * d * h;
                wq = Arrays.copyOfRange(all, 0, qn);
                wk = Arrays.copyOfRange(all, qn, qn + kn);
                wv = Arrays.copyOfRange(all, qn + kn, qn + 2 * kn);
            } else {
                wq = vec(WeightNames.attn(l, "q_proj", "weight"));
                wk = vec(WeightNames.attn(l, "k_proj", "weight"));
                wv = vec(WeightNames.attn(l, "v_proj", "weight"));
            }
            double[] qNorm = opt(WeightNames.qNorm(l));
            double[] kNorm = opt(WeightNames.kNorm(l));
            double[] wo = vec(WeightNames.attn(l, "o_proj", "weight"));
            double[] bq = opt(WeightNames.attn(l, "q_proj", "bias"));
            double[] bk = opt(WeightNames.attn(l, "k_proj", "bias"));
            double[] bv = opt(WeightNames.attn(l, "v_proj", "bias"));
            double[] bo = opt(WeightNames.attn(l, "o_proj", "bias"));
            double[] g1 = vec(WeightNames.inputNorm(l));
            double[] g2 = vec(WeightNames.postAttentionNorm(l));
            double[][] q = new double[t][];
            double[][] k = new double[t][];
            double[][] v = new double[t][];
            for (int p = 0; p < t; p++) {
                double[] n = rms(x[p], g1);
                q[p] = rope(headNorm(matvec(wq, bq, n, s.numHeads() * d), qNorm, d), p, s.numHeads(), d, inv);
                k[p] = rope(headNorm(matvec(wk, bk, n, s.numKvHeads() * d), kNorm, d), p, s.numKvHeads(), d, inv);
                v[p] = matvec(wv, bv, n, s.numKvHeads() * d);
            }
            double[][] x2 = new double[t][];
            for (int p = 0; p < t; p++) {
                double[] att = new double[s.numHeads() * d];
                for (int head = 0; head < s.numHeads(); head++) {
                    int kvh = head / s.groupSize();
                    double[] sc = new double[p + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= p; j++) {
                        boolean visible = c.slidingWindow() <= 0 || p - j < c.slidingWindow();
                        double dot = 0;
                        for (int e = 0; e < d; e++) {
                            dot += q[p][head * d + e] * k[j][kvh * d + e];
                        }
                        sc[j] = visible ? dot / Math.sqrt(d) : Double.NEGATIVE_INFINITY;
                        max = Math.max(max, sc[j]);
                    }
                    double z = 0;
                    for (int j = 0; j <= p; j++) {
                        sc[j] = Math.exp(sc[j] - max);
                        z += sc[j];
                    }
                    for (int j = 0; j <= p; j++) {
                        for (int e = 0; e < d; e++) {
                            att[head * d + e] += sc[j] / z * v[j][kvh * d + e];
                        }
                    }
                }
                double[] o = matvec(wo, bo, att, h);
                x2[p] = new double[h];
                for (int i = 0; i < h; i++) {
                    x2[p][i] = x[p][i] + o[i];
                }
            }
            double[] wg;
            double[] wu;
            if (w.has(WeightNames.gateUp(l))) {
                // Phi-3: gate rows, then up rows (HF's chunk(2, dim=-1))
                double[] all = vec(WeightNames.gateUp(l));
                int half = s.intermediateSize() * h;
                wg = Arrays.copyOfRange(all, 0, half);
                wu = Arrays.copyOfRange(all, half, 2 * half);
            } else {
                wg = vec(WeightNames.mlp(l, "gate_proj", "weight"));
                wu = vec(WeightNames.mlp(l, "up_proj", "weight"));
            }
            double[] wd = vec(WeightNames.mlp(l, "down_proj", "weight"));
            double[] bd = opt(WeightNames.mlp(l, "down_proj", "bias"));
            for (int p = 0; p < t; p++) {
                double[] n = rms(x2[p], g2);
                double[] gt = matvec(wg, null, n, s.intermediateSize());
                double[] up = matvec(wu, null, n, s.intermediateSize());
                for (int i = 0; i < gt.length; i++) {
                    gt[i] = gt[i] / (1 + Math.exp(-gt[i])) * up[i];
                }
                double[] dn = matvec(wd, bd, gt, h);
                for (int i = 0; i < h; i++) {
                    x2[p][i] += dn[i];
                }
            }
            x = x2;
        }
        double[] gf = vec(WeightNames.FINAL_NORM);
        double[] head = w.has(WeightNames.LM_HEAD) ? vec(WeightNames.LM_HEAD) : emb;
        double[][] out = new double[t][];
        for (int p = 0; p < t; p++) {
            out[p] = matvec(head, null, rms(x[p], gf), c.vocabSize());
        }
        return out;
    }

    /** Qwen3's q_norm/k_norm: RMSNorm over each head's d values of a [heads * d] vector; null norm: x itself. */
    private double[] headNorm(double[] x, double[] g, int d) {
        if (g == null) {
            return x;
        }
        double[] y = new double[x.length];
        for (int hd = 0; hd < x.length / d; hd++) {
            double[] one = rms(Arrays.copyOfRange(x, hd * d, (hd + 1) * d), g);
            System.arraycopy(one, 0, y, hd * d, d);
        }
        return y;
    }

    /** rotate_half RoPE on each head of a [heads * d] vector at position p. */
    private static double[] rope(double[] x, int p, int heads, int d, double[] inv) {
        double[] y = new double[x.length];
        int half = d / 2;
        for (int hd = 0; hd < heads; hd++) {
            for (int i = 0; i < half; i++) {
                double a = p * inv[i];
                double x1 = x[hd * d + i];
                double x2 = x[hd * d + i + half];
                y[hd * d + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
                y[hd * d + i + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
            }
        }
        return y;
    }
}
