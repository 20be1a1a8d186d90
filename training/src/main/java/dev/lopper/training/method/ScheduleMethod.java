package dev.lopper.training.method;

import dev.lopper.training.job.ScheduleMethods;

import dev.lopper.training.job.PruneSchedule;
import dev.lopper.training.loop.Trainer;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.JsonNode;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.training.lora.LoraAdapters;

import java.io.IOException;
import java.util.List;
import java.util.Map;

/**
 * The seam of the schedule engine ({@link PruneSchedule}): a training-aware pruning method is one class
 * implementing this interface plus one {@link ScheduleMethods#register} line. The engine owns everything else:
 * the loop (prune, train, prune ...), surgery, LoRA training and merging, checkpoints and resume, the progress
 * line, the curves, the composed plan and the final model.
 *
 * <p>What a method decides: its {@link #phases} (how far to prune at each step and how many training steps
 * follow), its {@link #allocation} (how a cumulative ratio becomes cuts, on the ORIGINAL model's indices), and
 * {@link #score} (importance of every structure of the CURRENT, already pruned model, in its own indices; the
 * engine maps them back, scores already-removed units -infinity and allocates the cumulative ratio). A method
 * that learns from training reads every optimizer step's adapter gradients in {@link #observe}; state it keeps
 * across steps goes through {@link #state}/{@link #restore} (saved with each step's checkpoint) and is sliced
 * by the engine's call to {@link #pruned}.
 *
 * <pre>{@code
 * final class MyMethod implements ScheduleMethod {
 *     public String name() { return "my-method"; }
 *     public List<Phase> phases() { return List.of(new Phase(0.1, 20), new Phase(0.2, 20)); }
 *     public Allocation.Options allocation(int layers) { return Allocation.Options.of(0.2, Set.of("heads", "channels"), "uniform"); }
 *     public Scores score(StepContext c) { ... }
 * }
 * ScheduleMethods.register("my-method", MyMethod::new);
 * }</pre>
 */
public interface ScheduleMethod {
    /** The name of {@code --method} and of the plan's criterion. */
    String name();

    /** The settings this method runs with and where each comes from ("paper", "user"), printed at start. */
    Map<String, String> settings();

    /** The steps, in order; each {@link Phase#pruneTo} is cumulative (of the original model's prunable parameters). */
    List<Phase> phases();

    /**
     * How a cumulative ratio becomes cuts on the original model (strategy, targets, head unit, layers kept); the
     * engine replaces the ratio with each phase's. {@code layers}: the original model's layer count.
     */
    Allocation.Options allocation(int layers);

    /** Importance of every structure of the current model ({@link StepContext#model()}), in its own indices. */
    Scores score(StepContext context) throws IOException;

    /**
     * Whether {@link #observe} must see every training step. Then a training phase interrupted by a kill restarts
     * from its beginning on resume (what the method learned in it is not in the checkpoint), so that a resumed
     * run equals an uninterrupted one; otherwise training resumes from its own checkpoint.
     */
    default boolean observesTraining() {
        return false;
    }

    /**
     * The learning rate of 0-based training step {@code step} counted over the whole run (every phase), for a method
     * whose official code trains with one schedule through its prune steps; null (the default): each training phase
     * has its own warm-up and cosine decay from {@code options}' peak.
     */
    default dev.lopper.training.loop.ParamGroup.Rate runRate(dev.lopper.training.loop.TrainOptions options) {
        return null;
    }

    /** After each optimizer step's clipped gradients, before the update (see {@code Trainer.Listener#gradients}). */
    default void observe(int step, LoraAdapters lora, List<NDArray> grads, StepContext context) {
    }

    /** The current model was cut: {@code kept} gives, per layer of it, what stays (in its own indices). */
    default void pruned(List<LayerSelection> kept) {
    }

    /** State to checkpoint after each step (JSON), or null. */
    default JsonNode state() {
        return null;
    }

    /** Restores {@link #state()} on resume. */
    default void restore(JsonNode state) {
    }
}
