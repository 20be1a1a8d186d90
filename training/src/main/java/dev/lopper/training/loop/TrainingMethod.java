package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.lopper.pruning.graph.LayerSelection;

import java.util.List;
import java.util.Map;

/**
 * A method that runs inside the {@link Trainer}'s one loop through hooks, never owning a loop: LoRAPrune's
 * importance (after the clipped gradients), EfficientLLM's saliency (after the backward) and cuts (after the
 * update), BiP's upper level (after the update), Compresso's log_alpha constraint (after the update). The trainer
 * calls, per optimizer step: {@link #afterBackward} (gradients summed over the micro-batches), clipping,
 * {@link #beforeUpdate}, the optimizer updates, {@link #afterUpdate} (which may return structures to cut: the
 * trainer cuts the trainee and its optimizer state alike, then calls {@link #cut}). State kept across steps goes
 * into every checkpoint through {@link #state}/{@link #restore}.
 *
 * <pre>{@code
 * final class MyMethod implements TrainingMethod<FullTrainee> {
 *     public String name() { return "my-method"; }
 *     public void afterBackward(int step, FullTrainee t, Gradients g) { ... read g.get(name) ... }
 * }
 * }</pre>
 *
 * @param <T> the trainee the method reads
 */
public interface TrainingMethod<T extends Trainee> {
    /** Plain training: no hooks. */
    static <T extends Trainee> TrainingMethod<T> none() {
        return () -> "none";
    }

    /** What the method provides besides the model: a second batch per micro-batch (BiP's upper level). */
    interface StepData {
        /** Training windows [microBatch, T] of the step's {@code micro}-th extra micro-batch, in {@code scope}. */
        NDArray extraBatch(NDManager scope, int step, int micro);

        int accumulation();

        /** Called after each extra micro-batch: the run's progress line when one is due (a long mask update stays visible). */
        default void progress(int step, int micro) {
        }
    }

    String name();

    /** Settings a resume must match (compared as JSON), or null. */
    default JsonNode options() {
        return null;
    }

    /** Training batches per micro-batch slot: 1, or 2 when {@link #afterUpdate} reads {@link StepData#extraBatch}. */
    default int batchesPerStep() {
        return 1;
    }

    /** After the step's micro-batches: their summed gradients, before clipping. */
    default void afterBackward(int step, T trainee, Gradients grads) {
    }

    /** After clipping, before the optimizer updates. */
    default void beforeUpdate(int step, T trainee, Gradients grads) {
    }

    /**
     * After the updates of 0-based {@code step}: the structures to keep now (one selection per layer of the
     * current model, in its own indices) when this is a prune point, else null.
     */
    default List<LayerSelection> afterUpdate(int step, T trainee, StepData data) {
        return null;
    }

    /** The selections {@link #afterUpdate} returned were applied (the method maps its own state onto them). */
    default void cut(List<LayerSelection> kept) {
    }

    /** Extra columns of the step just taken for the curve (Compresso's Lagrangian, sparsities, multipliers). */
    default Map<String, Double> metrics(T trainee) {
        return Map.of();
    }

    /** State to checkpoint (JSON), or null. */
    default JsonNode state() {
        return null;
    }

    default void restore(JsonNode state) {
    }
}
