package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import dev.lopper.pruning.graph.LayerSelection;

import java.util.List;
import java.util.Map;

/**
 * What the {@link Trainer} trains: its parameters in {@link ParamGroup}s and the forward/backward of one
 * micro-batch. {@code LoraTrainee} (adapters on a frozen model, in memory or layer-streamed),
 * {@link FullTrainee} (every weight) and Compresso's (adapters and hard-concrete masks) implement it; the loop,
 * the optimizer, clipping, the learning rates, validation, checkpoints and resume are the trainer's.
 *
 * <pre>{@code
 * Trainee t = new LoraTrainee(LossPass.inMemory(model), adapters, options, LossTerm.CAUSAL_LM);
 * new Trainer<>(t, TrainingMethod.none(), data, options, checkpoints, Trainer.Listener.NONE).run();
 * }</pre>
 */
public interface Trainee {
    /** The parameter groups, in a fixed order (the optimizers, clipping and checkpoints follow it). */
    List<ParamGroup> groups();

    /**
     * Adds {@code d(factor x loss)/dp} of the micro-batch to {@code grads}; returns the loss's share of the step's
     * training loss (normally {@code factor x loss}).
     */
    double train(MicroBatch batch, Gradients grads);

    /** The mean loss of validation windows {@code ids} [n, T] (no dropout, no gradients). */
    double evaluate(NDManager scope, NDArray ids);

    /** The manager a step's temporary arrays are scoped under (the first group's). */
    default NDManager manager() {
        return groups().get(0).manager();
    }

    /** Tokens one window of {@code seqLen} tokens costs in a forward pass (a trainee that prepends a prompt adds it). */
    default long tokensPerWindow(int seqLen) {
        return seqLen;
    }

    /** The model's parameter count now (the curve's size column). */
    long modelParameters();

    /** What a resume must find the same (the adapters' settings, the method), compared as JSON; null: nothing. */
    default JsonNode describe() {
        return null;
    }

    /** For trainees whose shape changes while training (cuts): what {@link #restore} needs besides the tensors. */
    default JsonNode shape() {
        return null;
    }

    /**
     * Puts a checkpoint's tensors in place. The default copies each group tensor from {@code saved} by name, shapes
     * checked; a trainee whose shape changed ({@link #shape}) rebuilds itself from {@code shape} first.
     */
    default void restore(JsonNode shape, Map<String, F32Tensors.Loaded> saved, String file) {
        for (ParamGroup g : groups()) {
            g.tensors().forEach((name, p) -> {
                F32Tensors.Loaded t = saved.get(name);
                if (t == null || !new Shape(t.shape()).equals(p.getShape())) {
                    throw new IllegalArgumentException(file + ": tensor '" + name + "' is missing or has another shape than this run's");
                }
                F32Tensors.copyInto(p, t.data());
            });
        }
    }

    /**
     * Cuts the structures outside {@code kept} (one selection per layer, current indices) from the trained tensors
     * and, alike, from the optimizer moments ({@code moments}: {@code NAME.exp_avg}, {@code NAME.exp_avg_sq});
     * returns the cut moments by the same names. Only trainees that can change shape support it.
     */
    default Map<String, float[]> cut(List<LayerSelection> kept, Map<String, NDArray> moments) {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " cannot be cut while training");
    }
}
