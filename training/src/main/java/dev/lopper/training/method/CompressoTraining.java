package dev.lopper.training.method;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelStats;
import dev.lopper.model.ProjectionHook;
import dev.lopper.model.Scalars;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.LoraHook;
import dev.lopper.training.loop.Batches;
import dev.lopper.training.loop.CausalLm;
import dev.lopper.training.loop.F32Tensors;
import dev.lopper.training.loop.Gradients;
import dev.lopper.training.loop.LossPass;
import dev.lopper.training.loop.MicroBatch;
import dev.lopper.training.loop.ParamGroup;
import dev.lopper.training.loop.Trainee;
import dev.lopper.training.loop.TrainingMethod;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.random.RandomGenerator;

/**
 * Compresso's training ({@code CompressoTrainer.train}) on the one {@link dev.lopper.training.loop.Trainer}: the
 * trainee is LoRA plus the hard-concrete masks, in three groups as the official
 * {@code create_optimizer_and_scheduler} makes them: LoRA at the linearly decaying LoRA rate (clipped to
 * {@code maxGradNorm}), log_alpha at {@code regLr}, the multipliers at {@code -regLr} (gradient ascent: they
 * maximise the Lagrangian); the masks' groups are not updated during the first
 * {@link CompressoOptions#prepruningSteps} steps (LoRA alone). Each micro-batch is one {@link #train} pass. As a
 * method it stops the run at the first non-finite value (after the backward) and clamps log_alpha after every
 * update ({@code constrain_parameters}).
 *
 * <pre>{@code
 * CompressoTraining c = new CompressoTraining(model, lora, masks, prompt, options);
 * new Trainer<>(c, c, TrainingData.of(windows), options.train(), checkpoints, listener).run();
 * }</pre>
 */
public final class CompressoTraining implements Trainee, TrainingMethod<CompressoTraining> {
    public static final String NAME = "compresso";
    private static final ObjectMapper JSON = new ObjectMapper();

    private final LlamaModel model;
    private final LoraAdapters lora;
    private final L0Masks masks;
    private final long[] prompt;
    private final CompressoOptions o;
    private final List<ParamGroup> groups;
    private double ce;
    private double lagrangian;
    private double sparsity;
    private double target;

    /** @param prompt token ids of the collaborative prompt (empty: none) */
    public CompressoTraining(LlamaModel model, LoraAdapters lora, L0Masks masks, long[] prompt, CompressoOptions options) {
        this.model = model;
        this.lora = lora;
        this.masks = masks;
        this.prompt = prompt;
        this.o = options;
        this.groups = List.of(
                new ParamGroup("lora", lora.tensors(), lora.manager(), o::loraLrAt, true, 0),
                new ParamGroup("log_alpha", masks.logAlphas(), masks.manager(), s -> pruning(s) ? o.regLr() : Double.NaN, false, 0),
                new ParamGroup("lambda", masks.lambdas(), masks.manager(), s -> pruning(s) ? -o.regLr() : Double.NaN, false, 0));
    }

    @Override
    public List<ParamGroup> groups() {
        return groups;
    }

    @Override
    public String name() {
        return NAME;
    }

    private boolean pruning(int step) {
        return step >= o.prepruningSteps();
    }

    /**
     * One micro-batch ({@code CompressoTrainer.training_step}): masks z sampled from the hard-concrete distribution
     * (noise from the micro-batch's seed), the causal-LM loss of the masked model with LoRA, plus (once pruning has
     * started) the Lagrangian {@code lambda_1 (s - t) + lambda_2 (s - t)^2} of the expected sparsity s and the target
     * t; one backward gives the gradients of A, B, every log_alpha and both multipliers. All of them are autograd
     * leaves aliased into the micro-batch's scope, so the adapters' and masks' own storage never joins a graph.
     * Before pruning starts LoRA trains alone (no masks, no Lagrangian).
     */
    @Override
    public double train(MicroBatch b, Gradients grads) {
        boolean pruning = pruning(b.step());
        if (b.micro() == 0) {
            ce = 0;
            lagrangian = 0;
            sparsity = pruning ? Double.NaN : masks.expectedSparsity();
        }
        target = pruning ? o.targetAt(b.step() - o.prepruningSteps()) : 0;
        NDManager scope = b.scope();
        SplittableRandom noise = new SplittableRandom(b.seed());
        LoraHook loraHook = new LoraHook(lora, scope, true, true);
        Map<String, NDArray> logAlphas = pruning ? F32Tensors.leaves(masks.logAlphas(), scope) : Map.of();
        Map<String, NDArray> lambdas = pruning ? F32Tensors.leaves(masks.lambdas(), scope) : Map.of();
        double loss;
        double lag = 0;
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            ProjectionHook hook = loraHook;
            if (pruning) {
                NDArray[] headZ = new NDArray[model.config().numLayers()];
                NDArray[] channelZ = new NDArray[model.config().numLayers()];
                Iterator<NDArray> a = logAlphas.values().iterator(); // the leaves of masks.units(), in order
                for (L0Masks.Units u : masks.units()) {
                    (u.head() ? headZ : channelZ)[u.layer()] = sample(a.next(), noise, scope);
                }
                hook = new MaskHook(loraHook, headZ, channelZ);
            }
            NDArray ids = withPrompt(scope, b.ids());
            NDArray logits = CausalLm.logits(model, scope, ids, hook, i -> LossPass.seedLayer(b.seed(), i), new int[0], new ArrayList<>());
            NDArray total = loss(logits, ids, prompt.length);
            loss = total.getFloat();
            if (pruning) {
                NDArray s = masks.expectedSize(List.copyOf(logAlphas.values())).mul(Scalars.of(scope, 1.0 / masks.prunable())).neg().add(1);
                sparsity = s.getFloat();
                NDArray gap = s.sub((float) target);
                NDArray l = lambdas.get("lambda_1").mul(gap).add(lambdas.get("lambda_2").mul(gap.square())).reshape(new Shape());
                lag = l.getFloat();
                total = total.add(l);
            }
            gc.backward(total.mul(Scalars.of(scope, b.factor())));
        }
        Iterator<NDArray> g = loraHook.gradients().iterator();
        lora.tensors().keySet().forEach(name -> grads.add(name, g.next()));
        logAlphas.forEach((name, a) -> grads.add(name, a.getGradient()));
        lambdas.forEach((name, a) -> grads.add(name, a.getGradient()));
        ce += loss / o.train().accumulation();
        lagrangian += lag / o.train().accumulation();
        return loss / o.train().accumulation();
    }

    /** z for {@code logAlpha} with noise drawn from {@code noise} (differentiable in log_alpha). */
    private static NDArray sample(NDArray logAlpha, RandomGenerator noise, NDManager scope) {
        float[] u = HardConcrete.logitNoise(noise, (int) logAlpha.size());
        return HardConcrete.sample(logAlpha, F32Tensors.owned(scope, u, logAlpha.getShape()));
    }

    /** The prompt's tokens, then the windows: [microBatch, prompt + T]. */
    private NDArray withPrompt(NDManager scope, NDArray ids) {
        if (prompt.length == 0) {
            return ids;
        }
        NDArray p = scope.create(prompt).reshape(1, prompt.length).repeat(0, ids.getShape().get(0));
        return NDArrays.concat(new ai.djl.ndarray.NDList(p, ids), 1);
    }

    /**
     * The causal-LM loss of the window tokens after a prompt of {@code promptLen} tokens: as HF with the prompt's
     * labels set to -100 (Compresso's {@code preprocess}); with no prompt exactly {@link CausalLm#loss}.
     */
    static NDArray loss(NDArray logits, NDArray ids, int promptLen) {
        if (promptLen == 0) {
            return CausalLm.loss(logits, ids);
        }
        Shape s = ids.getShape();
        long t = s.get(1) - promptLen;
        NDArray targets = ids.get(new NDIndex(":, {}:", promptLen)).reshape(s.get(0), t, 1);
        NDArray logp = logits.get(new NDIndex(":, {}:{}, :", promptLen - 1, promptLen - 1 + t)).logSoftmax(-1);
        return logp.gather(targets, 2).mean().neg();
    }

    /** The LoRA model's causal-LM loss without masks (Compresso's runs hold no validation text). */
    @Override
    public double evaluate(NDManager scope, NDArray ids) {
        return CausalLm.loss(CausalLm.logits(model, scope, ids, new LoraHook(lora, scope, false, false)), ids).getFloat();
    }

    @Override
    public long tokensPerWindow(int seqLen) {
        return seqLen + prompt.length;
    }

    @Override
    public long modelParameters() {
        return ModelStats.parameters(model.config());
    }

    @Override
    public JsonNode describe() {
        ObjectNode n = o.json();
        n.remove("checkpointEvery");
        n.set("lora", JSON.valueToTree(o.lora().orderedTargets()));
        n.put("loraRank", o.lora().rank()).put("loraAlpha", o.lora().alpha()).put("loraDropout", o.lora().dropout());
        return n;
    }

    /** Stops the run at the first non-finite loss or gradient, naming what went non-finite (never trains on NaN). */
    @Override
    public void afterBackward(int step, CompressoTraining self, Gradients grads) {
        double l = Batches.norm(grads.list("lora"));
        double a = Batches.norm(grads.list("log_alpha"));
        double m = Batches.norm(grads.list("lambda"));
        double s = pruning(step) ? sparsity : 0;
        if (!Double.isFinite(ce + lagrangian + s + l + a + m)) {
            throw new IllegalStateException(String.format(java.util.Locale.ROOT,
                    "compresso step %d: non-finite training values (LM loss %s, Lagrangian %s, expected sparsity %s, gradient norms: LoRA %s, "
                            + "log_alpha %s, multipliers %s)", step + 1, ce, lagrangian, s, l, a, m));
        }
    }

    @Override
    public List<LayerSelection> afterUpdate(int step, CompressoTraining self, StepData data) {
        if (pruning(step)) {
            masks.constrain();
        }
        return null;
    }

    /** lagrangian, expected_sparsity, target_sparsity (0 before pruning starts), lambda_1, lambda_2 after the step. */
    @Override
    public Map<String, Double> metrics(CompressoTraining self) {
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("lagrangian", lagrangian);
        m.put("expected_sparsity", sparsity);
        m.put("target_sparsity", target);
        m.put("lambda_1", (double) masks.lambda1().getFloat(0));
        m.put("lambda_2", (double) masks.lambda2().getFloat(0));
        return m;
    }
}
