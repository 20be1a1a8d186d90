package dev.lopper.pruning;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import java.util.ArrayList;
import java.util.List;

/**
 * Brute force for the criterion tests: every activation of the calibration batch materialized at once with the
 * full {@link LlamaModel} ([sequence][token][channel], double), every weight as a double matrix, and the papers'
 * formulas written as plain loops.
 */
public final class Activations {
    public final List<double[][][]> oIn = new ArrayList<>();
    public final List<double[][][]> downIn = new ArrayList<>();
    public final List<double[][][]> layerIn = new ArrayList<>();
    public final List<double[][][]> layerOut = new ArrayList<>();

    public Activations(ModelConfig config, TensorSource source, long[][] windows) {
        int n = windows.length;
        int t = windows[0].length;
        try (LlamaModel model = LlamaModel.load(config, source, Device.cpu()); NDManager m = NDManager.newBaseManager()) {
            long[] flat = new long[n * t];
            for (int i = 0; i < n; i++) {
                System.arraycopy(windows[i], 0, flat, i * t, t);
            }
            NDList rope = model.ropeTables(m, t);
            NDArray mask = model.mask(m, t, null);
            NDArray h = model.embed(m, m.create(flat, new Shape(n, t)));
            LayerHooks hooks = new LayerHooks() {
                @Override
                public void oProjInput(int layer, NDArray x) {
                    oIn.set(layer, cube(x));
                }

                @Override
                public void downProjInput(int layer, NDArray x) {
                    downIn.set(layer, cube(x));
                }
            };
            for (int i = 0; i < config.numLayers(); i++) {
                oIn.add(null);
                downIn.add(null);
                layerIn.add(cube(h));
                h = model.layer(i, h, rope, mask, hooks);
                layerOut.add(cube(h));
            }
        }
    }

    public static double[][][] cube(NDArray x) {
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

    /** A layer's weight as double [rows][cols]. */
    public static double[][] weight(ModelConfig config, TensorSource source, int layer, String which) {
        try (NDManager m = NDManager.newBaseManager()) {
            LayerWeights w = LayerWeights.load(source, config, layer, m);
            NDArray a = switch (which) {
                case "q" -> w.q();
                case "o" -> w.o();
                case "up" -> w.up();
                case "gate" -> w.gate();
                case "down" -> w.down();
                default -> throw new IllegalArgumentException(which);
            };
            int r = (int) a.getShape().get(0);
            int c = (int) a.getShape().get(1);
            float[] f = a.toFloatArray();
            double[][] out = new double[r][c];
            for (int i = 0; i < r; i++) {
                for (int j = 0; j < c; j++) {
                    out[i][j] = f[i * c + j];
                }
            }
            return out;
        }
    }

    /** Wanda's scaler_row: sum over all tokens of x_j^2, divided by the number of sequences. */
    public static double[] scalerRow(double[][][] x) {
        double[] out = new double[x[0][0].length];
        for (double[][] seq : x) {
            for (double[] tok : seq) {
                for (int c = 0; c < out.length; c++) {
                    out[c] += tok[c] * tok[c];
                }
            }
        }
        for (int c = 0; c < out.length; c++) {
            out[c] /= x.length;
        }
        return out;
    }

    /** FLAP's BiasGPT.add_batch transcribed (one sequence per call, alias quirk included): {baseline, fluc}. */
    public static double[][] flap(double[][][] x) {
        int ch = x[0][0].length;
        double[] baseline = new double[ch];
        double[] fluc = new double[ch];
        int ns = 0;
        for (double[][] seq : x) {
            for (int c = 0; c < ch; c++) {
                baseline[c] *= (double) ns / (ns + 1);
                double m = 0;
                for (double[] tok : seq) {
                    m += tok[c];
                }
                baseline[c] += m / seq.length / (ns + 1);
            }
            if (ns == 0) {
                java.util.Arrays.fill(fluc, 0);
            } else {
                for (int c = 0; c < ch; c++) {
                    fluc[c] *= (double) (ns - 1) / ns;
                    double s = 0;
                    for (double[] tok : seq) {
                        s += (tok[c] - baseline[c]) * (tok[c] - baseline[c]);
                    }
                    fluc[c] += s / (ns + 1);
                }
            }
            ns++;
        }
        return new double[][] {baseline, fluc};
    }

    /** Per column j: mean_i |W[i][j]|. */
    public static double[] colAbsMean(double[][] w) {
        double[] out = new double[w[0].length];
        for (double[] row : w) {
            for (int j = 0; j < out.length; j++) {
                out[j] += Math.abs(row[j]) / w.length;
            }
        }
        return out;
    }

    /** Per column j: sum_i W[i][j]^2. */
    public static double[] colSq(double[][] w) {
        double[] out = new double[w[0].length];
        for (double[] row : w) {
            for (int j = 0; j < out.length; j++) {
                out[j] += row[j] * row[j];
            }
        }
        return out;
    }

    public static double[] sumRuns(double[] v, int w) {
        double[] out = new double[v.length / w];
        for (int i = 0; i < v.length; i++) {
            out[i / w] += v[i];
        }
        return out;
    }

    public static double[] meanRuns(double[] v, int w) {
        double[] out = sumRuns(v, w);
        for (int i = 0; i < out.length; i++) {
            out[i] /= w;
        }
        return out;
    }

    public static double[] zscore(double[] x) {
        double mean = java.util.Arrays.stream(x).average().orElse(0);
        double ss = 0;
        for (double v : x) {
            ss += (v - mean) * (v - mean);
        }
        double sd = Math.sqrt(ss / (x.length - 1));
        double[] out = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            out[i] = (x[i] - mean) / sd;
        }
        return out;
    }
}
