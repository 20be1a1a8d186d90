package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * One micro-batch of a training step, as the {@link Trainer} hands it to its {@link Trainee}.
 *
 * @param scope owns everything the pass creates; closed after the micro-batch
 * @param ids token windows [microBatch, T]
 * @param first the index of the first window in the run's training windows (a loss term that caches per window,
 *              such as a teacher's logits, keys on it)
 * @param step the 0-based optimizer step
 * @param micro the micro-batch within the step
 * @param factor the loss is scaled by this before the backward (1 / accumulation)
 * @param seed torch's generator seed of this micro-batch (dropout; a function of the run's seed, step and micro)
 */
public record MicroBatch(NDManager scope, NDArray ids, int first, int step, int micro, double factor, int seed) {
}
