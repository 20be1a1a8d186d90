package dev.lopper.training.loop;

import dev.lopper.training.method.EfficientLlm;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.lopper.pruning.graph.LayerSelection;

import java.util.List;
import java.util.Map;

/**
 * A pruning method that runs inside {@link FullTrainer}'s loop (EfficientLLM's saliency, BiP's masks). The trainer
 * owns the loop, the optimizer, clipping, checkpoints and resume; a method sees each step's gradients, may run
 * its own passes after the weight update (BiP's upper level), and returns the structures to cut now.
 *
 * <pre>{@code
 * FullTrainer t = new FullTrainer(model, data, options, checkpoints, listener, new EfficientLlm(original, settings));
 * FullTrainer.Result r = t.run();
 * }</pre>
 */
public interface PruneDuringTraining {
    /** Plain full-parameter training. */
    PruneDuringTraining NONE = new PruneDuringTraining() {
        @Override
        public String name() {
            return "none";
        }
    };

    /** What a method may read besides the model: the step's extra batch (BiP's second loader). */
    interface StepData {
        /** Training windows [microBatch, T] of the step's {@code micro}-th extra micro-batch, in {@code scope}. */
        NDArray extraBatch(NDManager scope, int step, int micro);

        int accumulation();
    }

    String name();

    /** Training batches per micro-batch slot: 1, or 2 when {@link #afterStep} reads {@link StepData#extraBatch}. */
    default int batchesPerStep() {
        return 1;
    }

    /** Applied to every layer in the training forward pass and validation (BiP's current mask). */
    default FullModel.LayerTransform transform() {
        return FullModel.LayerTransform.NONE;
    }

    /** The step's gradient of the mean loss by weight name (after accumulation, before clipping); do not keep it. */
    default void observe(int step, FullModel model, Map<String, NDArray> grads) {
    }

    /**
     * After the weight update of {@code step} (0-based): the selections to cut now, one per layer of the current
     * model in its own indices, or null for no cut.
     */
    default List<LayerSelection> afterStep(int step, FullModel model, StepData data) {
        return null;
    }

    /** The selections returned by {@link #afterStep} were applied (the method maps its own state onto them). */
    default void cut(List<LayerSelection> current) {
    }

    /** Settings that a resume must match (compared as JSON), or null. */
    default JsonNode options() {
        return null;
    }

    /** State to checkpoint (JSON), or null. */
    default JsonNode state() {
        return null;
    }

    default void restore(JsonNode state) {
    }
}
