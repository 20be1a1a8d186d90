package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;

/**
 * The training loss of a micro-batch from the student's logits: {@link #CAUSAL_LM} (HF's next-token
 * cross-entropy) for every method today; a distillation loss is one more implementation. Every trainee computes
 * its loss through the term it is given, so a new loss changes no loop.
 *
 * <pre>{@code
 * NDArray loss = LossTerm.CAUSAL_LM.loss(logits, batch);    // a scalar, in the logits' manager
 * }</pre>
 */
@FunctionalInterface
public interface LossTerm {
    /** HF's causal-LM loss ({@link CausalLm#loss}). */
    LossTerm CAUSAL_LM = (logits, batch) -> CausalLm.loss(logits, batch.ids());

    /** The mean loss of the micro-batch (a scalar with gradients back to the logits). */
    NDArray loss(NDArray logits, MicroBatch batch);

    /**
     * Student layers whose outputs (the residual stream after the layer, [B, T, hidden]) the term reads besides the
     * logits, ascending; empty (the default) for a term of the logits only. A trainee keeps them in the autograd
     * graph and calls {@link #loss(NDArray, java.util.List, MicroBatch)}.
     */
    default int[] hiddenLayers() {
        return new int[0];
    }

    /**
     * Called by every trainee with the micro-batch before the student's forward pass: a term that needs other work
     * per batch (a teacher's forward) does it here, so that it does not hold memory beside the student's head.
     */
    default void prepare(MicroBatch batch) {
    }

    /** The loss with the outputs of {@link #hiddenLayers} ({@code hidden.get(j)} is layer {@code hiddenLayers()[j]}'s). */
    default NDArray loss(NDArray logits, java.util.List<NDArray> hidden, MicroBatch batch) {
        return loss(logits, batch);
    }
}
