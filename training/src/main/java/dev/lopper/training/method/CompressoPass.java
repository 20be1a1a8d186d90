package dev.lopper.training.method;

import dev.lopper.training.job.Compresso;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ProjectionHook;
import dev.lopper.model.Scalars;
import dev.lopper.training.loop.CausalLm;
import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.LoraHook;
import dev.lopper.training.loop.LossPass;
import dev.lopper.training.loop.F32Tensors;

import java.util.ArrayList;
import java.util.List;
import java.util.random.RandomGenerator;

/**
 * One micro-batch of Compresso training ({@code CompressoTrainer.training_step}): masks z sampled from the
 * hard-concrete distribution, the causal-LM loss of the masked model with LoRA, plus (once pruning has started)
 * the Lagrangian {@code lambda_1 (s - t) + lambda_2 (s - t)^2} of the expected sparsity s and the target t; one
 * backward gives the gradients of A, B, every log_alpha and both multipliers. All of them are autograd leaves
 * aliased into {@code scope}, so the adapters' and masks' own storage never joins a graph.
 *
 * <pre>{@code
 * CompressoPass.Result r = CompressoPass.run(scope, model, lora, masks, ids, 0, noise, 0.3, 1.0, seed);
 * }</pre>
 */
public final class CompressoPass {
    private CompressoPass() {
    }

    /**
     * @param ce the causal-LM loss (mean over predicted tokens, unscaled)
     * @param lagrangian the Lagrangian term (0 when the masks were not used)
     * @param sparsity expected sparsity s (NaN when the masks were not used)
     * @param loraGrads d(factor x loss)/dA, dB in {@link LoraAdapters#tensors} order
     * @param logAlphaGrads per log_alpha in {@link L0Masks#logAlphas} order (empty when the masks were not used)
     * @param lambdaGrads for lambda_1, lambda_2 (empty when the masks were not used)
     */
    public record Result(double ce, double lagrangian, double sparsity, List<NDArray> loraGrads, List<NDArray> logAlphaGrads,
                         List<NDArray> lambdaGrads) {
    }

    /** Noise (logit of u) for every log_alpha, in {@link L0Masks#logAlphas} order, drawn from {@code random}. */
    public static List<float[]> noise(L0Masks masks, RandomGenerator random) {
        List<float[]> out = new ArrayList<>();
        for (NDArray a : masks.logAlphas().values()) {
            out.add(HardConcrete.logitNoise(random, (int) a.size()));
        }
        return out;
    }

    /**
     * Runs one micro-batch with gradients.
     *
     * @param ids [B, promptLen + T]: the prompt's tokens, then the window; only the window's tokens are predicted
     * @param noise the masks' noise, or null to train LoRA alone (the pre-pruning phase: no masks, no Lagrangian)
     * @param target the target sparsity t of this step
     * @param factor the loss is scaled by this before the backward (1 / accumulation)
     * @param seed torch's generator seed for the adapters' dropout (per layer, as {@link LossPass})
     */
    public static Result run(NDManager scope, LlamaModel model, LoraAdapters lora, L0Masks masks, NDArray ids, int promptLen,
                             List<float[]> noise, double target, double factor, int seed) {
        LoraHook loraHook = new LoraHook(lora, scope, true, true);
        List<NDArray> logAlphas = new ArrayList<>();
        List<NDArray> lambdas = new ArrayList<>();
        ProjectionHook hook = loraHook;
        NDArray[] headZ = new NDArray[model.config().numLayers()];
        NDArray[] channelZ = new NDArray[model.config().numLayers()];
        if (noise != null) {
            for (NDArray a : masks.logAlphas().values()) {
                logAlphas.add(leaf(a, scope));
            }
            for (NDArray l : masks.lambdas().values()) {
                lambdas.add(leaf(l, scope));
            }
        }
        double ce;
        double lag = 0;
        double sparsity = Double.NaN;
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            NDArray total;
            if (noise != null) {
                int k = 0;
                for (int i = 0; i < headZ.length; i++) {
                    if (masks.heads()[i] != null) {
                        headZ[i] = sample(scope, logAlphas.get(k), noise.get(k));
                        k++;
                    }
                    if (masks.channels()[i] != null) {
                        channelZ[i] = sample(scope, logAlphas.get(k), noise.get(k));
                        k++;
                    }
                }
                hook = new MaskHook(loraHook, headZ, channelZ);
            }
            NDArray logits = CausalLm.logits(model, scope, ids, hook, i -> LossPass.seedLayer(seed, i));
            NDArray loss = loss(logits, ids, promptLen);
            ce = loss.getFloat();
            total = loss;
            if (noise != null) {
                NDArray s = masks.expectedSize(logAlphas).mul(Scalars.of(scope, 1.0 / masks.prunable())).neg().add(1);
                sparsity = s.getFloat();
                NDArray gap = s.sub((float) target);
                NDArray l = lambdas.get(0).mul(gap).add(lambdas.get(1).mul(gap.square())).reshape(new Shape());
                lag = l.getFloat();
                total = total.add(l);
            }
            gc.backward(total.mul(Scalars.of(scope, factor)));
        }
        List<NDArray> loraGrads = new ArrayList<>();
        for (LoraAdapters.Adapter a : lora.adapters()) {
            loraGrads.add(loraHook.gradientA(a));
            loraGrads.add(loraHook.gradientB(a));
        }
        return new Result(ce, lag, sparsity, loraGrads, logAlphas.stream().map(NDArray::getGradient).toList(),
                lambdas.stream().map(NDArray::getGradient).toList());
    }

    private static NDArray sample(NDManager scope, NDArray logAlpha, float[] noise) {
        return HardConcrete.sample(logAlpha, F32Tensors.owned(scope, noise, logAlpha.getShape()));
    }

    /** An autograd leaf sharing {@code x}'s storage, owned by {@code scope} (as {@link LoraHook}'s aliases). */
    private static NDArray leaf(NDArray x, NDManager scope) {
        NDArray leaf = x.stopGradient();
        leaf.attach(scope);
        leaf.setRequiresGradient(true);
        return leaf;
    }

    /**
     * The causal-LM loss of the window tokens after a prompt of {@code promptLen} tokens: as HF with the prompt's
     * labels set to -100 (Compresso's {@code preprocess}); with no prompt exactly {@link CausalLm#loss}.
     */
    public static NDArray loss(NDArray logits, NDArray ids, int promptLen) {
        if (promptLen == 0) {
            return CausalLm.loss(logits, ids);
        }
        Shape s = ids.getShape();
        long t = s.get(1) - promptLen;
        NDArray targets = ids.get(new NDIndex(":, {}:", promptLen)).reshape(s.get(0), t, 1);
        NDArray logp = logits.get(new NDIndex(":, {}:{}, :", promptLen - 1, promptLen - 1 + t)).logSoftmax(-1);
        return logp.gather(targets, 2).mean().neg();
    }
}
