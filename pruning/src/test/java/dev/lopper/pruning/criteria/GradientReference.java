package dev.lopper.pruning.criteria;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.training.GradientCollector;
import dev.lopper.calibration.gradient.LayerParam;
import dev.lopper.model.Decoder;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.Masks;
import dev.lopper.model.Rope;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The brute force of the gradient criteria tests, independent of {@code GradientEngine}: for every window on its own,
 * the whole model (all layers loaded at once) runs forward with every layer weight requiring gradients, the
 * causal-LM loss is written out (log-softmax times a one-hot target matrix, mean over the T - 1 targets), and one
 * backward gives that window's g_n for every tensor. The same forward records sum_t x_j^2 at the input of every
 * linear (the Wanda statistic).
 */
final class GradientReference {
    /** Per window, per tensor name: g_n (double, flattened as stored). */
    final List<Map<String, double[]>> perWindow = new ArrayList<>();
    /** Per tensor name: the weight (double, flattened [out, in]) and its shape. */
    final Map<String, double[]> weights = new HashMap<>();
    final Map<String, long[]> shapes = new HashMap<>();
    /** Per "layer/tap" (attn, o, mlp, down): sum over all windows and tokens of x_j^2. */
    final Map<String, double[]> squares = new HashMap<>();
    final int windows;

    GradientReference(ModelConfig c, TensorSource src, long[][] ws) {
        windows = ws.length;
        int t = ws[0].length;
        try (NDManager root = NDManager.newBaseManager(Device.cpu())) {
            for (long[] window : ws) {
                try (NDManager m = root.newSubManager()) {
                    List<LayerWeights> layers = new ArrayList<>();
                    for (int i = 0; i < c.numLayers(); i++) {
                        LayerWeights w = LayerWeights.load(src, c, i, m);
                        for (LayerParam p : LayerParam.values()) {
                            NDArray a = p.of(w);
                            if (a != null) {
                                a.setRequiresGradient(true);
                                weights.put(p.tensorName(i), a.toType(DataType.FLOAT64, false).toDoubleArray());
                                shapes.put(p.tensorName(i), a.getShape().getShape());
                            }
                        }
                        layers.add(w);
                    }
                    NDArray embed = src.load(WeightNames.EMBED, m);
                    NDArray norm = src.load(WeightNames.FINAL_NORM, m);
                    NDArray head = src.load(src.has(WeightNames.LM_HEAD) ? WeightNames.LM_HEAD : WeightNames.EMBED, m);
                    NDList rope = new Rope(c).tables(m, 0, t);
                    NDArray mask = Masks.causal(m, t, c.slidingWindow(), null);
                    float[] oneHot = new float[(t - 1) * c.vocabSize()];
                    for (int j = 0; j < t - 1; j++) {
                        oneHot[j * c.vocabSize() + (int) window[j + 1]] = 1;
                    }
                    LayerHooks hooks = new LayerHooks() {
                        @Override
                        public void attentionInput(int layer, NDArray x) {
                            square(layer + "/attn", x);
                        }

                        @Override
                        public void oProjInput(int layer, NDArray x) {
                            square(layer + "/o", x);
                        }

                        @Override
                        public void mlpInput(int layer, NDArray x) {
                            square(layer + "/mlp", x);
                        }

                        @Override
                        public void downProjInput(int layer, NDArray x) {
                            square(layer + "/down", x);
                        }
                    };
                    try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                        NDArray h = embed.get(new NDIndex("{}", m.create(window))).reshape(1, t, c.hiddenSize());
                        for (LayerWeights w : layers) {
                            h = Decoder.layer(w, h, rope.get(0), rope.get(1), mask, c.rmsNormEps(), c.headDim(), hooks);
                        }
                        NDArray logits = Decoder.linear(Decoder.rmsNorm(h, norm, c.rmsNormEps()), head, null)
                                .reshape(t, c.vocabSize()).get(new NDIndex("0:{}", t - 1));
                        NDArray loss = logits.logSoftmax(1).mul(m.create(oneHot).reshape(t - 1, c.vocabSize())).sum().neg().div(t - 1);
                        gc.backward(loss);
                    }
                    Map<String, double[]> g = new HashMap<>();
                    for (LayerWeights w : layers) {
                        for (LayerParam p : LayerParam.values()) {
                            NDArray a = p.of(w);
                            if (a != null) {
                                g.put(p.tensorName(w.index()), a.getGradient().toType(DataType.FLOAT64, false).toDoubleArray());
                            }
                        }
                    }
                    perWindow.add(g);
                }
            }
        }
    }

    private void square(String key, NDArray x) {
        int ch = (int) x.getShape().get(2);
        float[] f = x.toFloatArray();
        double[] acc = squares.computeIfAbsent(key, k -> new double[ch]);
        for (int i = 0; i < f.length; i++) {
            acc[i % ch] += (double) f[i] * f[i];
        }
    }

    /** (1/N) sum_n g_n of {@code tensor}. */
    double[] meanGradient(String tensor) {
        double[] out = new double[weights.get(tensor).length];
        for (Map<String, double[]> g : perWindow) {
            double[] x = g.get(tensor);
            for (int i = 0; i < out.length; i++) {
                out[i] += x[i] / windows;
            }
        }
        return out;
    }

    /** (1/N) sum_n g_n^2 of {@code tensor} (LLM-Pruner's acc_grad). */
    double[] meanSquaredGradient(String tensor) {
        double[] out = new double[weights.get(tensor).length];
        for (Map<String, double[]> g : perWindow) {
            double[] x = g.get(tensor);
            for (int i = 0; i < out.length; i++) {
                out[i] += x[i] * x[i] / windows;
            }
        }
        return out;
    }
}
