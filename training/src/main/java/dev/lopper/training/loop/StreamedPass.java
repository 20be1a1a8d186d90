package dev.lopper.training.loop;

import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.LoraHook;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import dev.lopper.model.Decoder;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.Masks;
import dev.lopper.model.Rope;
import dev.lopper.model.Scalars;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import java.util.ArrayList;
import java.util.List;

/**
 * A {@link LossPass} that never holds more than one decoder layer's weights: the layer-streamed backward of the
 * gradient engine (branch {@code gradient}), for adapters.
 *
 * <ol>
 *   <li>Forward sweep without gradients: embeddings, then each layer (loaded from the memory-mapped checkpoint,
 *   run with the adapters, released), keeping every layer's input hidden states [B, T, hidden].</li>
 *   <li>Head: final norm + LM head on the last hidden states, loss, backward to {@code dL/dh}.</li>
 *   <li>Layers in reverse: reloaded, recomputed from the stored input with A, B and the input as autograd leaves
 *   (the same dropout masks: torch's generator is re-seeded per layer exactly as in the sweep), back-propagated
 *   with the upstream gradient; A's and B's gradients are added, the input's gradient goes to the layer below.</li>
 * </ol>
 *
 * <pre>{@code
 * LossPass pass = new StreamedPass(md.config(), md.checkpoint(), LossTerm.CAUSAL_LM);
 * new Trainer<>(new LoraTrainee(pass, lora, options), TrainingMethod.none(), data, options, checkpoints, listener).run();
 * }</pre>
 */
public record StreamedPass(ModelConfig config, TensorSource source, LossTerm term) implements LossPass {
    public StreamedPass {
        if (term.hiddenLayers().length > 0) {
            throw new IllegalArgumentException("--hidden-loss needs the student in memory (its layers' outputs in one autograd graph): not with --stream");
        }
    }

    @Override
    public double train(MicroBatch b, LoraAdapters lora, List<NDArray> grads) {
        NDManager scope = b.scope();
        term.prepare(b); // a teacher runs before the sweep, not beside the student's head
        NDArray ids = b.ids();
        int seed = b.seed();
        List<NDArray> inputs = sweep(scope, ids, lora, seed, true);
        int n = config.numLayers();
        NDArray dh;
        double loss;
        try (NDManager head = scope.newSubManager()) {
            NDArray h = F32Tensors.keep(inputs.get(n), head);
            h.setRequiresGradient(true);
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray l = term.loss(head(head, h), b).mul(Scalars.of(head, b.factor())); // owned fp32 constant: MulBackward keeps it until gc.backward (Scalars)
                loss = l.getFloat();
                gc.backward(l);
            }
            dh = F32Tensors.keep(h.getGradient(), scope);
        }
        for (int i = n - 1; i >= 0; i--) {
            try (NDManager layer = scope.newSubManager()) {
                LayerWeights w = LayerWeights.load(source, config, i, layer);
                NDArray x = F32Tensors.keep(inputs.get(i), layer);
                x.setRequiresGradient(true);
                LoraHook hook = new LoraHook(lora, layer, true, true);
                try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                    LossPass.seedLayer(seed, i);
                    NDArray y = layer(layer, w, x, hook);
                    gc.backward(y.mul(dh).sum()); // vector-Jacobian product with the upstream gradient
                }
                int k = 0;
                for (LoraAdapters.Adapter a : lora.adapters()) {
                    if (a.layer() == i) {
                        grads.get(k).addi(hook.gradientA(a));
                        grads.get(k + 1).addi(hook.gradientB(a));
                    }
                    k += 2;
                }
                NDArray below = F32Tensors.keep(x.getGradient(), scope);
                dh.close();
                dh = below;
                inputs.get(i + 1).close();
            }
        }
        return loss;
    }

    @Override
    public double evaluate(NDManager scope, NDArray ids, LoraAdapters lora) {
        List<NDArray> h = sweep(scope, ids, lora, 0, false);
        return CausalLm.loss(head(scope, h.get(config.numLayers())), ids).getFloat();
    }

    /** Inputs of every layer and the last output (n + 1 arrays, owned by {@code scope}). */
    private List<NDArray> sweep(NDManager scope, NDArray ids, LoraAdapters lora, int seed, boolean dropout) {
        List<NDArray> h = new ArrayList<>();
        // only the batch's rows of the embedding are read (a 128k-token table is 1 GiB in fp32)
        h.add(source.loadRows(WeightNames.EMBED, ids.toLongArray(), scope, ai.djl.ndarray.types.DataType.FLOAT32)
                .reshape(ids.getShape().get(0), ids.getShape().get(1), config.hiddenSize()));
        for (int i = 0; i < config.numLayers(); i++) {
            try (NDManager layer = scope.newSubManager()) {
                LayerWeights w = LayerWeights.load(source, config, i, layer);
                LossPass.seedLayer(seed, i);
                h.add(F32Tensors.keep(layer(layer, w, h.get(i), new LoraHook(lora, layer, dropout, false)), scope));
            }
        }
        return h;
    }

    private NDArray layer(NDManager m, LayerWeights w, NDArray x, LoraHook hook) {
        int t = (int) x.getShape().get(1);
        NDList rope = new Rope(config).tables(m, 0, t);
        NDArray mask = Masks.causal(m, t, config.slidingWindow(), null);
        NDArray in = x.getManager() == m ? x : F32Tensors.alias(x, m);
        return Decoder.layer(w, in, rope.get(0), rope.get(1), mask, config.rmsNormEps(), config.headDim(), LayerHooks.NONE, null, hook);
    }

    private NDArray head(NDManager m, NDArray h) {
        NDArray norm = source.load(WeightNames.FINAL_NORM, m);
        NDArray lmHead = source.load(WeightNames.head(config, source), m);
        NDArray in = h.getManager() == m ? h : F32Tensors.alias(h, m);
        return Decoder.linear(Decoder.rmsNorm(in, norm, config.rmsNormEps()), lmHead, null);
    }
}
