package dev.lopper.training.method;

/**
 * One step of a schedule: prune the current model until {@code pruneTo} of the original model's prunable
 * parameters are gone (null: no prune in this step), then train LoRA adapters for {@code trainSteps} optimizer
 * steps (0: none) and merge them.
 *
 * <pre>{@code
 * new Phase(0.25, 10);   // prune to 25%, then 10 training steps
 * }</pre>
 */
public record Phase(Double pruneTo, int trainSteps) {
    public Phase {
        if (trainSteps < 0) {
            throw new IllegalArgumentException("train steps " + trainSteps + ": expected >= 0");
        }
        if (pruneTo != null && !(pruneTo >= 0 && pruneTo < 1)) {
            throw new IllegalArgumentException("ratio " + pruneTo + ": expected a number in [0, 1)");
        }
    }
}
