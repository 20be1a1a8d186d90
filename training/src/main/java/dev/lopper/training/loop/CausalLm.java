package dev.lopper.training.loop;

import dev.lopper.training.lora.LoraHook;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.Decoder;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ProjectionHook;

/**
 * The causal-LM forward pass and loss with a {@link ProjectionHook} on every projection: the same embedding,
 * {@link Decoder#layer} and head as {@link LlamaModel#logits}, so base + adapter runs exactly the model's math.
 *
 * <pre>{@code
 * try (NDManager scope = manager.newSubManager()) {
 *     NDArray ids = scope.create(windows);                       // [B, T]
 *     double loss = CausalLm.loss(CausalLm.logits(model, scope, ids, new LoraHook(lora, scope, false, false)), ids).getFloat();
 * }
 * }</pre>
 */
public final class CausalLm {
    private CausalLm() {
    }

    /** Logits [B, T, vocab] of token ids [B, T] (on the model's device, owned by {@code scope}). */
    public static NDArray logits(LlamaModel model, NDManager scope, NDArray ids, ProjectionHook hook) {
        return logits(model, scope, ids, hook, i -> { }, new int[0], new java.util.ArrayList<>());
    }

    /**
     * As above, calling {@code beforeLayer} with each layer's index before running it (dropout seeding) and adding
     * the outputs of layers {@code keep} (ascending) to {@code hidden}, in the autograd graph.
     */
    public static NDArray logits(LlamaModel model, NDManager scope, NDArray ids, ProjectionHook hook,
                                 java.util.function.IntConsumer beforeLayer, int[] keep, java.util.List<NDArray> hidden) {
        int t = (int) ids.getShape().get(1);
        NDList rope = model.ropeTables(scope, t);
        NDArray mask = model.mask(scope, t, null);
        NDArray h = model.embed(scope, ids);
        var c = model.config();
        for (int i = 0; i < c.numLayers(); i++) {
            beforeLayer.accept(i);
            h = Decoder.layer(model.layerWeights(i), h, rope.get(0), rope.get(1), mask, c.rmsNormEps(), c.headDim(),
                    LayerHooks.NONE, null, hook);
            if (java.util.Arrays.binarySearch(keep, i) >= 0) { // keep is ascending
                hidden.add(h);
            }
        }
        return model.head(h);
    }

    /**
     * HF's causal-LM loss: the mean over the B (T - 1) shifted targets of {@code -log softmax(logits)[next id]}
     * (a scalar in the logits' manager).
     */
    public static NDArray loss(NDArray logits, NDArray ids) {
        Shape s = ids.getShape();
        long t1 = s.get(1) - 1;
        NDArray targets = ids.get(new NDIndex(":, 1:")).reshape(s.get(0), t1, 1);
        NDArray logp = logits.get(new NDIndex(":, :{}, :", t1)).logSoftmax(-1);
        return logp.gather(targets, 2).mean().neg();
    }
}
