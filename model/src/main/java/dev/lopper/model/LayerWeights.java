package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

/**
 * The weights of one decoder layer, fp32, in HF layout ([out, in]). Biases are null where the layer has none.
 * Shapes are checked against the config on load, so a wrong checkpoint fails here with the tensor's name.
 */
public record LayerWeights(int index, LayerShape shape,
                           NDArray inputNorm, NDArray q, NDArray qBias, NDArray k, NDArray kBias,
                           NDArray v, NDArray vBias, NDArray o, NDArray oBias,
                           NDArray postNorm, NDArray gate, NDArray up, NDArray down, NDArray downBias) {

    /** Loads layer {@code i} from {@code source} into {@code manager}. */
    public static LayerWeights load(TensorSource source, ModelConfig config, int i, NDManager manager) {
        LayerShape s = config.layer(i);
        int h = config.hiddenSize();
        int d = config.headDim();
        Loader l = new Loader(source, manager);
        return new LayerWeights(i, s,
                l.get(WeightNames.inputNorm(i), h),
                l.get(WeightNames.attn(i, "q_proj", "weight"), (long) s.numHeads() * d, h),
                config.qkvBias() ? l.get(WeightNames.attn(i, "q_proj", "bias"), (long) s.numHeads() * d) : null,
                l.get(WeightNames.attn(i, "k_proj", "weight"), (long) s.numKvHeads() * d, h),
                config.qkvBias() ? l.get(WeightNames.attn(i, "k_proj", "bias"), (long) s.numKvHeads() * d) : null,
                l.get(WeightNames.attn(i, "v_proj", "weight"), (long) s.numKvHeads() * d, h),
                config.qkvBias() ? l.get(WeightNames.attn(i, "v_proj", "bias"), (long) s.numKvHeads() * d) : null,
                l.get(WeightNames.attn(i, "o_proj", "weight"), h, (long) s.numHeads() * d),
                s.oProjBias() ? l.get(WeightNames.attn(i, "o_proj", "bias"), h) : null,
                l.get(WeightNames.postAttentionNorm(i), h),
                l.get(WeightNames.mlp(i, "gate_proj", "weight"), s.intermediateSize(), h),
                l.get(WeightNames.mlp(i, "up_proj", "weight"), s.intermediateSize(), h),
                l.get(WeightNames.mlp(i, "down_proj", "weight"), h, s.intermediateSize()),
                s.downProjBias() ? l.get(WeightNames.mlp(i, "down_proj", "bias"), h) : null);
    }

    /** Loads tensors and checks each shape against what the config implies. */
    record Loader(TensorSource source, NDManager manager) {
        NDArray get(String name, long... expected) {
            if (!source.has(name)) {
                throw new ModelFormatException(sourceName() + ": tensor '" + name + "' is missing (the config implies shape "
                        + new Shape(expected) + ")");
            }
            Shape found = source.shape(name);
            if (!found.equals(new Shape(expected))) {
                throw new ModelFormatException(sourceName() + ": tensor '" + name + "' has shape " + found
                        + ", but config.json implies " + new Shape(expected));
            }
            return source.load(name, manager);
        }

        private String sourceName() {
            return source instanceof dev.lopper.model.io.Checkpoint c ? c.dir().toString() : "weights";
        }
    }
}
