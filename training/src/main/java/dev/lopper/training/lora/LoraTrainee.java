package dev.lopper.training.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.lopper.model.ModelStats;
import dev.lopper.training.loop.Checkpoints;
import dev.lopper.training.loop.Gradients;
import dev.lopper.training.loop.LossPass;
import dev.lopper.training.loop.LrSchedule;
import dev.lopper.training.loop.MicroBatch;
import dev.lopper.training.loop.ParamGroup;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.Trainee;

import java.util.List;

/**
 * LoRA adapters on a frozen model as a {@link Trainee}: one group (every A and B, clipped, at the options'
 * warm-up + cosine rate and weight decay); each micro-batch runs through a {@link LossPass}, the whole model in
 * memory or one layer at a time. Only A and B are leaves of the autograd graph; base weights never require
 * gradients.
 *
 * <pre>{@code
 * LoraTrainee t = new LoraTrainee(LossPass.inMemory(model, LossTerm.CAUSAL_LM), adapters, options);
 * new Trainer<>(t, TrainingMethod.none(), data, options, checkpoints, listener).run();
 * }</pre>
 */
public final class LoraTrainee implements Trainee {
    public static final String GROUP = "lora";

    private final LossPass pass;
    private final LoraAdapters lora;
    private final List<ParamGroup> groups;

    public LoraTrainee(LossPass pass, LoraAdapters lora, TrainOptions o) {
        this(pass, lora, new LrSchedule(o.learningRate(), o.warmup(), o.steps())::at, o.weightDecay());
    }

    /** With the learning rate {@code rate} per 0-based step (a schedule running over several training phases). */
    public LoraTrainee(LossPass pass, LoraAdapters lora, ParamGroup.Rate rate, double weightDecay) {
        this.pass = pass;
        this.lora = lora;
        this.groups = List.of(new ParamGroup(GROUP, lora.tensors(), lora.manager(), rate, true, weightDecay));
    }

    public LoraAdapters lora() {
        return lora;
    }

    @Override
    public List<ParamGroup> groups() {
        return groups;
    }

    @Override
    public double train(MicroBatch batch, Gradients grads) {
        return pass.train(batch, lora, grads.list(GROUP));
    }

    @Override
    public double evaluate(NDManager scope, NDArray ids) {
        return pass.evaluate(scope, ids, lora);
    }

    @Override
    public long modelParameters() {
        return ModelStats.parameters(lora.model());
    }

    @Override
    public JsonNode describe() {
        return Checkpoints.tree(lora.config());
    }
}
