package dev.lopper.calibration;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;

import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * Every activation of a calibration batch, materialized with the full {@link LlamaModel} in one batch:
 * acts.get(layer).get(tap)[sequence][token][channel] and each layer's input/output hidden states. Tests compute
 * each statistic directly from these with plain loops.
 */
final class BruteForce {
    final List<Map<Tap, double[][][]>> acts = new ArrayList<>();
    final List<double[][][]> layerIn = new ArrayList<>();
    final List<double[][][]> layerOut = new ArrayList<>();

    BruteForce(ModelDir md, long[][] windows) {
        int n = windows.length;
        int t = windows[0].length;
        try (LlamaModel model = md.loadModel(Device.cpu()); NDManager m = NDManager.newBaseManager()) {
            long[] flat = new long[n * t];
            for (int i = 0; i < n; i++) {
                System.arraycopy(windows[i], 0, flat, i * t, t);
            }
            NDArray ids = m.create(flat, new Shape(n, t));
            NDList rope = model.ropeTables(m, t);
            NDArray mask = model.mask(m, t, null);
            NDArray h = model.embed(m, ids);
            LayerHooks hooks = new LayerHooks() {
                @Override
                public void attentionInput(int layer, NDArray x) {
                    put(layer, Tap.ATTENTION_INPUT, x);
                }

                @Override
                public void oProjInput(int layer, NDArray x) {
                    put(layer, Tap.O_PROJ_INPUT, x);
                }

                @Override
                public void mlpInput(int layer, NDArray x) {
                    put(layer, Tap.MLP_INPUT, x);
                }

                @Override
                public void downProjInput(int layer, NDArray x) {
                    put(layer, Tap.DOWN_PROJ_INPUT, x);
                }
            };
            for (int i = 0; i < md.config().numLayers(); i++) {
                acts.add(new EnumMap<>(Tap.class));
                layerIn.add(cube(h));
                h = model.layer(i, h, rope, mask, hooks);
                layerOut.add(cube(h));
            }
        }
    }

    private void put(int layer, Tap tap, NDArray x) {
        acts.get(layer).put(tap, cube(x));
    }

    static double[][][] cube(NDArray x) {
        Shape s = x.getShape();
        int b = (int) s.get(0);
        int t = (int) s.get(1);
        int c = (int) s.get(2);
        float[] f = x.toFloatArray();
        double[][][] out = new double[b][t][c];
        for (int i = 0; i < b; i++) {
            for (int j = 0; j < t; j++) {
                for (int k = 0; k < c; k++) {
                    out[i][j][k] = f[(i * t + j) * c + k];
                }
            }
        }
        return out;
    }

    /** sum over all tokens of x_c^2. */
    static double[] sumSq(double[][][] x) {
        double[] out = new double[x[0][0].length];
        for (double[][] seq : x) {
            for (double[] tok : seq) {
                for (int c = 0; c < out.length; c++) {
                    out[c] += tok[c] * tok[c];
                }
            }
        }
        return out;
    }

    static double[] mean(double[][][] x) {
        double[] out = new double[x[0][0].length];
        long n = 0;
        for (double[][] seq : x) {
            for (double[] tok : seq) {
                n++;
                for (int c = 0; c < out.length; c++) {
                    out[c] += tok[c];
                }
            }
        }
        for (int c = 0; c < out.length; c++) {
            out[c] /= n;
        }
        return out;
    }

    /** Two-pass population variance. */
    static double[] variance(double[][][] x) {
        double[] mu = mean(x);
        double[] out = new double[mu.length];
        long n = 0;
        for (double[][] seq : x) {
            for (double[] tok : seq) {
                n++;
                for (int c = 0; c < out.length; c++) {
                    out[c] += (tok[c] - mu[c]) * (tok[c] - mu[c]);
                }
            }
        }
        for (int c = 0; c < out.length; c++) {
            out[c] /= n;
        }
        return out;
    }

    /** FLAP's BiasGPT.add_batch, transcribed line by line (one sequence per call, the alias quirk included). */
    static double[][] flapBiasGpt(double[][][] x) {
        int ch = x[0][0].length;
        double[] baseline = new double[ch];
        double[] fluc = new double[ch];
        int nsamples = 0;
        for (double[][] seq : x) {
            int bs = 1;
            int t = seq.length;
            for (int c = 0; c < ch; c++) {
                baseline[c] *= (double) nsamples / (nsamples + bs);
                double m = 0;
                for (double[] tok : seq) {
                    m += tok[c];
                }
                baseline[c] += m / t / (nsamples + bs);
            }
            if (nsamples == 0) {
                java.util.Arrays.fill(fluc, 0);
            } else {
                for (int c = 0; c < ch; c++) {
                    fluc[c] *= (double) (nsamples - 1) / (nsamples + bs - 1);
                    double s = 0;
                    for (double[] tok : seq) {
                        s += (tok[c] - baseline[c]) * (tok[c] - baseline[c]); // old_baseline aliases baseline
                    }
                    fluc[c] += s / (nsamples + bs);
                }
            }
            nsamples += bs;
        }
        return new double[][] {baseline, fluc};
    }
}
