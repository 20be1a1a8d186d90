package dev.lopper.calibration.gradient;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import dev.lopper.model.Decoder;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.Masks;
import dev.lopper.model.Rope;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The reference the streamed gradients are checked against (and the benchmark's baseline): the whole model
 * loaded, one forward over all windows as one batch inside one {@link GradientCollector}, one backward of
 * {@code sum_n L_n} -- what the papers' code does on a GPU. With {@code type} FLOAT64 every weight and activation
 * is double precision (the finite-difference test's loss).
 */
public final class WholeModelBackward {
    private WholeModelBackward() {
    }

    /** The loss {@code sum_n L_n} and, per layer tensor name, its gradient (as doubles). */
    public record Result(double loss, Map<String, double[]> gradients) {
    }

    public static Result run(ModelConfig config, TensorSource source, long[][] windows, DataType type, boolean grads) {
        return run(config, source, windows, type, grads, true);
    }

    /** With {@code copyOut} false the gradients are computed but not copied out (the benchmark: no heap copy). */
    public static Result run(ModelConfig config, TensorSource source, long[][] windows, DataType type, boolean grads,
                             boolean copyOut) {
        int n = windows.length;
        int t = windows[0].length;
        TensorSource typed = typed(source, type);
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            List<LayerWeights> layers = new ArrayList<>();
            for (int i = 0; i < config.numLayers(); i++) {
                LayerWeights w = LayerWeights.load(typed, config, i, m);
                layers.add(grads ? LayerParam.map(w, a -> {
                    a.setRequiresGradient(true);
                    return a;
                }) : w);
            }
            NDArray embed = typed.load(WeightNames.EMBED, m);
            NDArray norm = typed.load(WeightNames.FINAL_NORM, m);
            NDArray head = typed.load(config.tieWordEmbeddings() && !source.has(WeightNames.LM_HEAD)
                    ? WeightNames.EMBED : WeightNames.LM_HEAD, m);
            NDList rope = new Rope(config).tables(m, 0, t);
            NDArray cos = rope.get(0).toType(type, false);
            NDArray sin = rope.get(1).toType(type, false);
            NDArray mask = Masks.causal(m, t, config.slidingWindow(), null).toType(type, false);
            long[] ids = new long[n * t];
            long[] targets = new long[n * (t - 1)];
            for (int i = 0; i < n; i++) {
                System.arraycopy(windows[i], 0, ids, i * t, t);
                System.arraycopy(windows[i], 1, targets, i * (t - 1), t - 1);
            }
            double loss;
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray h = embed.get(new NDIndex("{}", m.create(ids))).reshape(n, t, config.hiddenSize());
                for (LayerWeights w : layers) {
                    h = Decoder.layer(w, h, cos, sin, mask, config.rmsNormEps(), config.headDim(), LayerHooks.NONE);
                }
                NDArray logits = Decoder.linear(Decoder.rmsNorm(h, norm, config.rmsNormEps()), head, null);
                NDArray l = GradientEngine.windowLosses(logits, m.create(targets, new Shape(n, t - 1, 1))).sum();
                loss = l.toType(DataType.FLOAT64, false).getDouble();
                if (grads) {
                    gc.backward(l);
                }
            }
            Map<String, double[]> out = new LinkedHashMap<>();
            if (grads && copyOut) {
                for (LayerWeights w : layers) {
                    for (LayerParam p : LayerParam.values()) {
                        NDArray a = p.of(w);
                        if (a != null) {
                            out.put(p.tensorName(w.index()), a.getGradient().toType(DataType.FLOAT64, false).toDoubleArray());
                        }
                    }
                }
            }
            return new Result(loss, out);
        }
    }

    /** {@code source} with every tensor loaded as {@code type}. */
    static TensorSource typed(TensorSource source, DataType type) {
        return new TensorSource() {
            @Override
            public java.util.Set<String> names() {
                return source.names();
            }

            @Override
            public Shape shape(String name) {
                return source.shape(name);
            }

            @Override
            public DataType storedType(String name) {
                return source.storedType(name);
            }

            @Override
            public NDArray load(String name, NDManager manager, DataType ignored) {
                return source.load(name, manager, type);
            }
        };
    }
}
