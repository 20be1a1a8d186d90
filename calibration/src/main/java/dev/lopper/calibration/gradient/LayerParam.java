package dev.lopper.calibration.gradient;

import ai.djl.ndarray.NDArray;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.WeightNames;

import java.util.function.Function;

/**
 * The parameters of one decoder layer that receive gradients, with their HF tensor names. A parameter the layer
 * lacks (a bias the model has none of) is null in {@link LayerWeights} and gets no statistics.
 */
public enum LayerParam {
    INPUT_NORM(LayerWeights::inputNorm, null, null),
    Q(LayerWeights::q, "q_proj", "weight"),
    Q_BIAS(LayerWeights::qBias, "q_proj", "bias"),
    K(LayerWeights::k, "k_proj", "weight"),
    K_BIAS(LayerWeights::kBias, "k_proj", "bias"),
    V(LayerWeights::v, "v_proj", "weight"),
    V_BIAS(LayerWeights::vBias, "v_proj", "bias"),
    O(LayerWeights::o, "o_proj", "weight"),
    O_BIAS(LayerWeights::oBias, "o_proj", "bias"),
    POST_NORM(LayerWeights::postNorm, null, null),
    GATE(LayerWeights::gate, "gate_proj", "weight"),
    UP(LayerWeights::up, "up_proj", "weight"),
    DOWN(LayerWeights::down, "down_proj", "weight"),
    DOWN_BIAS(LayerWeights::downBias, "down_proj", "bias");

    private final Function<LayerWeights, NDArray> getter;
    private final String proj;
    private final String param;

    LayerParam(Function<LayerWeights, NDArray> getter, String proj, String param) {
        this.getter = getter;
        this.proj = proj;
        this.param = param;
    }

    /** This parameter's array in {@code w}, or null when the layer has none. */
    public NDArray of(LayerWeights w) {
        return getter.apply(w);
    }

    /** The HF tensor name in layer {@code layer}, e.g. {@code model.layers.3.self_attn.q_proj.weight}. */
    public String tensorName(int layer) {
        if (this == INPUT_NORM) {
            return WeightNames.inputNorm(layer);
        }
        if (this == POST_NORM) {
            return WeightNames.postAttentionNorm(layer);
        }
        return proj.endsWith("_proj") && (proj.startsWith("gate") || proj.startsWith("up") || proj.startsWith("down"))
                ? WeightNames.mlp(layer, proj, param) : WeightNames.attn(layer, proj, param);
    }

    /** A copy of {@code w} with each present parameter replaced by {@code f} of it (same order as the record). */
    static LayerWeights map(LayerWeights w, Function<NDArray, NDArray> f) {
        Function<NDArray, NDArray> g = a -> a == null ? null : f.apply(a);
        return new LayerWeights(w.index(), w.shape(), g.apply(w.inputNorm()), g.apply(w.q()), g.apply(w.qBias()),
                g.apply(w.k()), g.apply(w.kBias()), g.apply(w.v()), g.apply(w.vBias()), g.apply(w.o()),
                g.apply(w.oBias()), g.apply(w.postNorm()), g.apply(w.gate()), g.apply(w.up()), g.apply(w.down()),
                g.apply(w.downBias()));
    }
}
