package dev.lopper.training.loop;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.Decoder;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.Masks;
import dev.lopper.model.ModelStats;
import dev.lopper.model.Rope;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.layer.LayerSpec;
import dev.lopper.model.layer.Param;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.surgery.Surgery;

import java.util.ArrayList;
import java.util.Collection;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;

/**
 * A model whose every weight is trainable: all tensors fp32 in one manager, by HF name, with a forward pass that
 * runs on any name-to-array map (the weights themselves, or autograd-leaf aliases of them from {@link F32Tensors#leaves}).
 * The layer math is {@link Decoder#layer}'s, the loss {@link CausalLm#loss}'s; nothing is duplicated.
 *
 * <p>Memory for full training is stated up front by {@link #trainingBytes}: weights + gradients + AdamW's two
 * moments, fp32, i.e. 16 bytes a parameter (activations come on top and scale with micro-batch x sequence).
 *
 * <pre>{@code
 * try (ModelDir d = ModelDir.open(dir); FullModel m = FullModel.load(d.config(), d.checkpoint(), Device.cpu());
 *      NDManager scope = m.manager().newSubManager()) {
 *     double loss = m.loss(scope, ids, m.weights(), LayerTransform.NONE).getFloat();
 * }
 * }</pre>
 *
 * @param weights the weights by HF name (live arrays; the optimizer updates them in place)
 */
public record FullModel(ModelConfig config, NDManager manager, Map<String, NDArray> weights) implements AutoCloseable {
    /** Changes a layer's weights just before the forward pass uses them (BiP's masks); NONE leaves them. */
    public interface LayerTransform {
        LayerTransform NONE = (layer, w, scope) -> w;

        LayerWeights apply(int layer, LayerWeights w, NDManager scope);
    }

    /** Loads every tensor of {@code source} as fp32 onto {@code device} (names in the source's order). */
    public static FullModel load(ModelConfig config, TensorSource source, Device device) {
        return build(config, device, source.names(), source::load);
    }

    /** A model from tensors held as Java floats (a checkpoint being resumed), in libtorch-owned storage. */
    public static FullModel of(ModelConfig config, Map<String, F32Tensors.Loaded> tensors, Device device) {
        return build(config, device, tensors.keySet(), (name, m) -> F32Tensors.owned(m, tensors.get(name).data(),
                new Shape(tensors.get(name).shape())));
    }

    /** The model whose tensor {@code name} (in {@code names}' order) {@code tensor} makes in the model's manager. */
    private static FullModel build(ModelConfig config, Device device, Collection<String> names,
                                   BiFunction<String, NDManager, NDArray> tensor) {
        NDManager m = NDManager.newBaseManager(device);
        try {
            Map<String, NDArray> w = new LinkedHashMap<>();
            names.forEach(name -> w.put(name, tensor.apply(name, m)));
            FullModel model = new FullModel(config, m, w);
            model.checkComplete();
            return model;
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
    }

    private void checkComplete() {
        List.of(WeightNames.EMBED, WeightNames.FINAL_NORM).forEach(this::require);
        for (int i = 0; i < config.numLayers(); i++) {
            LayerSpec spec = LayerSpec.of(config, i);
            spec.params().forEach((p, shape) -> {
                NDArray a = require(spec.tensorName(p));
                if (!a.getShape().equals(new Shape(shape))) {
                    throw new IllegalArgumentException("tensor '" + spec.tensorName(p) + "' has shape " + a.getShape()
                            + ", but the config implies " + new Shape(shape));
                }
            });
        }
    }

    private NDArray require(String name) {
        NDArray a = weights.get(name);
        if (a == null) {
            throw new IllegalArgumentException("tensor '" + name + "' is missing");
        }
        return a;
    }

    /** Bytes that full training holds for weights, gradients and AdamW's two moments (fp32): 16 per parameter. */
    public static long trainingBytes(ModelConfig config) {
        return 16L * ModelStats.parameters(config);
    }

    public long parameterCount() {
        return weights.values().stream().mapToLong(NDArray::size).sum();
    }

    /** Layer {@code i}'s weights taken from {@code w} (the model's arrays or leaves). */
    public LayerWeights layer(int i, Map<String, NDArray> w) {
        LayerSpec spec = LayerSpec.of(config, i);
        Map<Param, NDArray> p = new EnumMap<>(Param.class);
        spec.params().keySet().forEach(k -> p.put(k, w.get(spec.tensorName(k))));
        return new LayerWeights(i, spec.shape(), p.get(Param.INPUT_NORM), p.get(Param.Q), p.get(Param.Q_BIAS),
                p.get(Param.K), p.get(Param.K_BIAS), p.get(Param.V), p.get(Param.V_BIAS), p.get(Param.O),
                p.get(Param.O_BIAS), p.get(Param.POST_NORM), p.get(Param.GATE), p.get(Param.UP), p.get(Param.DOWN),
                p.get(Param.DOWN_BIAS), p.get(Param.Q_NORM), p.get(Param.K_NORM));
    }

    /**
     * Logits [B, T, vocab] of ids [B, T] with weights {@code w}, every intermediate in {@code scope}; the outputs of
     * layers {@code keep} (ascending) are added to {@code hidden}, in the autograd graph.
     */
    public NDArray logits(NDManager scope, NDArray ids, Map<String, NDArray> w, LayerTransform transform, int[] keep, List<NDArray> hidden) {
        int t = (int) ids.getShape().get(1);
        NDList rope = new Rope(config).tables(scope, 0, t);
        NDArray mask = Masks.causal(scope, t, config.slidingWindow(), null);
        Shape s = ids.getShape();
        NDArray h = w.get(WeightNames.EMBED).get(scope, new NDIndex("{}", ids.reshape(-1))).reshape(s.get(0), s.get(1), config.hiddenSize());
        for (int i = 0; i < config.numLayers(); i++) {
            h = Decoder.layer(transform.apply(i, layer(i, w), scope), h, rope.get(0), rope.get(1), mask, config.rmsNormEps(),
                    config.headDim(), LayerHooks.NONE);
            if (java.util.Arrays.binarySearch(keep, i) >= 0) { // keep is ascending
                hidden.add(h);
            }
        }
        NDArray head = w.containsKey(WeightNames.LM_HEAD) ? w.get(WeightNames.LM_HEAD) : w.get(WeightNames.EMBED); // tied
        return Decoder.linear(Decoder.rmsNorm(h, w.get(WeightNames.FINAL_NORM), config.rmsNormEps()), head, null);
    }

    /** HF's causal-LM loss (mean over shifted targets) of ids [B, T]. */
    public NDArray loss(NDManager scope, NDArray ids, Map<String, NDArray> w, LayerTransform transform) {
        return CausalLm.loss(logits(scope, ids, w, transform, new int[0], new ArrayList<>()), ids);
    }

    /** The weights as a {@link TensorSource} (for {@code Surgery} and {@code ModelWriter}); arrays are shared. */
    public TensorSource source() {
        return source(weights);
    }

    /** Any name-to-array map as a {@link TensorSource} (optimizer moments are cut like the weights). */
    static TensorSource source(Map<String, NDArray> tensors) {
        TensorMap t = new TensorMap(null);
        tensors.forEach(t::put);
        return t;
    }

    /**
     * A new model with {@code selections} (one per layer, this model's indices) cut by {@link Surgery}; this
     * model stays open.
     */
    public FullModel cut(List<LayerSelection> selections) {
        Surgery.Result r = Surgery.apply(config, source(), selections);
        return load(r.config(), r.tensors(), manager.getDevice());
    }

    @Override
    public void close() {
        manager.close();
    }
}
