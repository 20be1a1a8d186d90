package dev.lopper.training.loop;

import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.LoraHook;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.Scalars;

import java.util.List;
import java.util.SplittableRandom;

/**
 * How one micro-batch's loss and adapter gradients are computed: {@link #inMemory} (the whole model loaded) or
 * {@link StreamedPass} (one layer's weights at a time, for models larger than memory). Both seed torch's generator
 * from (micro-batch seed, layer) before each layer, so the dropout masks, and hence the results, agree.
 *
 * <pre>{@code
 * LossPass pass = LossPass.inMemory(model, LossTerm.CAUSAL_LM);
 * double loss = pass.train(batch, lora, grads);
 * }</pre>
 */
public interface LossPass {
    /**
     * Adds {@code d(factor * loss)/dA, dB} of the micro-batch to {@code grads} (in {@link LoraAdapters#tensors}
     * order); returns {@code factor * loss}, loss being the pass's {@link LossTerm} of the batch's windows.
     */
    double train(MicroBatch batch, LoraAdapters lora, List<NDArray> grads);

    /** The mean causal-LM loss of {@code ids} with the adapters, no dropout, no gradients. */
    double evaluate(NDManager scope, NDArray ids, LoraAdapters lora);

    /** torch's generator seeded for layer {@code layer} of a micro-batch with seed {@code seed}. */
    static void seedLayer(int seed, int layer) {
        Engine.getInstance().setRandomSeed(new SplittableRandom(seed * 31L + layer).nextInt() & Integer.MAX_VALUE);
    }

    /** The whole model in memory: one autograd graph from embeddings to loss. */
    static LossPass inMemory(LlamaModel model, LossTerm term) {
        return new LossPass() {
            @Override
            public double train(MicroBatch b, LoraAdapters lora, List<NDArray> grads) {
                NDManager scope = b.scope();
                term.prepare(b);
                LoraHook hook = new LoraHook(lora, scope, true, true);
                double loss;
                try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                    java.util.List<NDArray> hidden = new java.util.ArrayList<>();
                    NDArray logits = CausalLm.logits(model, scope, b.ids(), hook, i -> seedLayer(b.seed(), i), term.hiddenLayers(), hidden);
                    NDArray l = term.loss(logits, hidden, b).mul(Scalars.of(scope, b.factor())); // owned fp32 constant: MulBackward keeps it until gc.backward (Scalars)
                    loss = l.getFloat();
                    gc.backward(l);
                }
                List<NDArray> g = hook.gradients();
                for (int i = 0; i < g.size(); i++) {
                    grads.get(i).addi(g.get(i));
                }
                return loss;
            }

            @Override
            public double evaluate(NDManager scope, NDArray ids, LoraAdapters lora) {
                return CausalLm.loss(CausalLm.logits(model, scope, ids, new LoraHook(lora, scope, false, false)), ids).getFloat();
            }
        };
    }
}
