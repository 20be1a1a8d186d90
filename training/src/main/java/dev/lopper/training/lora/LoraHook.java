package dev.lopper.training.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.ProjectionHook;
import dev.lopper.model.Scalars;
import dev.lopper.model.layer.Param;
import dev.lopper.training.loop.F32Tensors;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * The adapters applied inside one forward pass: a {@link ProjectionHook} adding {@code (alpha / r) B A dropout(x)}
 * to each adapted projection. A and B are used through aliases owned by the pass's scope (so every intermediate
 * lands there and nothing leaks into the adapters' manager); with {@code trainable} the aliases are fresh autograd
 * leaves whose gradients {@link #gradientA}/{@link #gradientB} read after the backward.
 *
 * <p>A fused module (Phi-3's qkv_proj) sees one input: {@code A dropout(x)} is computed once, with one dropout
 * mask, and each logical projection adds its rows of B, exactly as PEFT on the fused HF module.
 *
 * <pre>{@code
 * try (NDManager scope = manager.newSubManager()) {
 *     LoraHook hook = new LoraHook(lora, scope, false, false);
 *     NDArray out = Decoder.layer(w, x, cos, sin, mask, eps, headDim, LayerHooks.NONE, null, hook);
 * }
 * }</pre>
 */
public final class LoraHook implements ProjectionHook {
    private final LoraAdapters lora;
    private final NDManager scope;
    private final boolean dropout;
    private final Map<Long, LoraAdapters.Adapter> byProjection = new HashMap<>();
    private final Map<LoraAdapters.Adapter, NDArray[]> leaves = new IdentityHashMap<>();
    private final Map<LoraAdapters.Adapter, NDArray> shared = new IdentityHashMap<>();
    private final Map<LoraAdapters.Adapter, NDArray> sharedInput = new IdentityHashMap<>();

    /**
     * @param scope owns the aliases and every intermediate of the pass
     * @param dropout apply the config's dropout (training); false for evaluation and merge checks
     * @param trainable make A and B autograd leaves (inside a {@code GradientCollector})
     */
    public LoraHook(LoraAdapters lora, NDManager scope, boolean dropout, boolean trainable) {
        this.lora = lora;
        this.scope = scope;
        this.dropout = dropout && lora.config().dropout() > 0;
        for (LoraAdapters.Adapter a : lora.adapters()) {
            for (Param p : a.rows().keySet()) {
                byProjection.put(key(a.layer(), p), a);
            }
            leaves.put(a, new NDArray[] {alias(a.a(), trainable), alias(a.b(), trainable)});
        }
    }

    private NDArray alias(NDArray x, boolean trainable) {
        NDArray leaf = F32Tensors.alias(x, scope); // same storage, no copy
        if (trainable) {
            leaf.setRequiresGradient(true);
        }
        return leaf;
    }

    private static long key(int layer, Param p) {
        return ((long) layer << 8) | p.ordinal();
    }

    @Override
    public NDArray project(int layer, Param weight, NDArray input, NDArray output) {
        LoraAdapters.Adapter a = byProjection.get(key(layer, weight));
        if (a == null) {
            return output;
        }
        NDArray[] ab = leaves.get(a);
        NDArray ax = shared.get(a);
        if (ax == null || sharedInput.get(a) != input) {
            ax = input;
            if (dropout) {
                double p = lora.config().dropout();
                NDArray keep = scope.randomUniform(0f, 1f, input.getShape()).gte(p).toType(DataType.FLOAT32, false);
                ax = input.mul(keep).mul(Scalars.of(scope, 1 / (1 - p))); // owned constants: the backward keeps them (Scalars)
            }
            ax = ax.matMul(ab[0].transpose()); // [B, T, r]
            shared.put(a, ax);
            sharedInput.put(a, input);
        }
        long[] rows = a.rows().get(weight);
        NDArray b = rows[0] == 0 && rows[1] == a.out() ? ab[1] : ab[1].get(new NDIndex("{}:{}", rows[0], rows[1]));
        return output.add(ax.matMul(b.transpose()).mul(Scalars.of(scope, lora.config().scale())));
    }

    /** Every dL/dA and dL/dB after the backward, in {@link LoraAdapters#tensors} order (A, then B, per adapter). */
    public List<NDArray> gradients() {
        List<NDArray> out = new ArrayList<>();
        for (LoraAdapters.Adapter a : lora.adapters()) {
            out.add(gradientA(a));
            out.add(gradientB(a));
        }
        return out;
    }

    /** dL/dA of an adapter after the backward (an alias of the leaf's gradient, owned by the scope). */
    public NDArray gradientA(LoraAdapters.Adapter a) {
        return leaves.get(a)[0].getGradient();
    }

    public NDArray gradientB(LoraAdapters.Adapter a) {
        return leaves.get(a)[1].getGradient();
    }
}
