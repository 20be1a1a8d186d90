package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.layer.LayerSpec;
import dev.lopper.model.layer.Param;

import java.util.EnumMap;
import java.util.Map;

/**
 * The weights of one decoder layer, fp32, in HF layout ([out, in]). Biases (and Qwen3's q/k norms) are null where
 * the layer has none. Which weights a layer has, and their shapes, come from its {@link LayerSpec}; shapes are
 * checked against it on load, so a wrong checkpoint fails here with the tensor's name.
 */
public record LayerWeights(int index, LayerShape shape,
                           NDArray inputNorm, NDArray q, NDArray qBias, NDArray k, NDArray kBias,
                           NDArray v, NDArray vBias, NDArray o, NDArray oBias,
                           NDArray postNorm, NDArray gate, NDArray up, NDArray down, NDArray downBias,
                           NDArray qNorm, NDArray kNorm) {

    /** A layer without q/k norms (every family but Qwen3). */
    public LayerWeights(int index, LayerShape shape, NDArray inputNorm, NDArray q, NDArray qBias, NDArray k,
                        NDArray kBias, NDArray v, NDArray vBias, NDArray o, NDArray oBias, NDArray postNorm,
                        NDArray gate, NDArray up, NDArray down, NDArray downBias) {
        this(index, shape, inputNorm, q, qBias, k, kBias, v, vBias, o, oBias, postNorm, gate, up, down, downBias, null, null);
    }

    /** Loads layer {@code i} from {@code source} into {@code manager}. */
    public static LayerWeights load(TensorSource source, ModelConfig config, int i, NDManager manager) {
        LayerSpec spec = LayerSpec.of(config, i);
        Loader l = new Loader(source, manager);
        Map<Param, NDArray> w = new EnumMap<>(Param.class);
        spec.params().forEach((p, shape) -> w.put(p, l.get(spec.tensorName(p), shape)));
        return new LayerWeights(i, spec.shape(), w.get(Param.INPUT_NORM), w.get(Param.Q), w.get(Param.Q_BIAS),
                w.get(Param.K), w.get(Param.K_BIAS), w.get(Param.V), w.get(Param.V_BIAS), w.get(Param.O),
                w.get(Param.O_BIAS), w.get(Param.POST_NORM), w.get(Param.GATE), w.get(Param.UP), w.get(Param.DOWN),
                w.get(Param.DOWN_BIAS), w.get(Param.Q_NORM), w.get(Param.K_NORM));
    }

    /** The weight playing role {@code p}, or null when the layer has none. */
    public NDArray get(Param p) {
        return switch (p) {
            case INPUT_NORM -> inputNorm;
            case Q -> q;
            case Q_BIAS -> qBias;
            case K -> k;
            case K_BIAS -> kBias;
            case V -> v;
            case V_BIAS -> vBias;
            case Q_NORM -> qNorm;
            case K_NORM -> kNorm;
            case O -> o;
            case O_BIAS -> oBias;
            case POST_NORM -> postNorm;
            case GATE -> gate;
            case UP -> up;
            case DOWN -> down;
            case DOWN_BIAS -> downBias;
        };
    }

    /** This layer with o_proj and down_proj replaced (criteria that mask removed columns), all else shared. */
    public LayerWeights withOutputProjections(NDArray newO, NDArray newDown) {
        return new LayerWeights(index, shape, inputNorm, q, qBias, k, kBias, v, vBias, newO, oBias, postNorm, gate, up,
                newDown, downBias, qNorm, kNorm);
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
            NDArray a = source.load(name, manager);
            // checked once per load, on the fp32 copy: a NaN weight would otherwise surface as NaN perplexity or
            // scores with no hint of where it came from
            String bad = Finite.problem(a);
            if (bad != null) {
                a.close();
                throw new ModelFormatException(fileOf(name) + ": tensor '" + name + "' holds " + bad);
            }
            return a;
        }

        private String sourceName() {
            return source instanceof dev.lopper.model.io.Checkpoint c ? c.dir().toString() : "weights";
        }

        private String fileOf(String name) {
            return source instanceof dev.lopper.model.io.Checkpoint c ? c.info(name).file().toString() : "weights";
        }
    }
}
