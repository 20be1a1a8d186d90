package dev.lopper.pruning.criteria;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.StructureGraph;

/**
 * A pruning criterion: scores every structure of a model ({@link StructureGraph}); it never decides how many to
 * cut (that is {@link Allocation}) and never touches weights (that is surgery). One class per paper, named after
 * it, registered by name in {@link Criteria}.
 *
 * <p>A criterion declares what it needs ({@link #needs()}), its paper's defaults ({@link #defaults()}) and, through
 * its {@link Scores#afterSurgery()}, any step its paper runs after surgery (FLAP's bias compensation), so that the
 * pipeline ({@code dev.lopper.pruning.Pruner}) runs any criterion without knowing which one it is.
 *
 * <pre>{@code
 * Criterion flap = Criteria.create("flap", Map.of());
 * flap.needs();                 // ACTIVATIONS
 * flap.defaults().allocation(); // "adaptive" (FLAP's AL-AM)
 * Scores s = flap.score(context);
 * }</pre>
 */
public interface Criterion {
    /** What a criterion needs besides the weights, in increasing cost. */
    enum Need {
        /** the weights only (magnitude) */
        NONE,
        /** activations of calibration text (Wanda-sp, FLAP, CFSP) */
        ACTIVATIONS,
        /** gradients of a loss on calibration text (e.g. LLM-Pruner's Taylor criteria) */
        GRADIENTS,
        /** adapters trained while pruning */
        ADAPTER_TRAINING
    }

    /** The name used on the command line and in plans ("magnitude", "wanda-sp", ...). */
    String name();

    /** The criterion's settings, recorded in the plan ({@code criterionOptions}); null for none. */
    default ObjectNode options() {
        return null;
    }

    /** What {@link #score} needs besides the weights. */
    default Need needs() {
        return Need.NONE;
    }

    /** Whether {@link ScoringContext#calibration()} must be given (activations or gradients). */
    default boolean needsCalibration() {
        return needs() != Need.NONE;
    }

    /** The settings its paper runs with, used where the user gives none. */
    default Defaults defaults() {
        return Defaults.weightsOnly("uniform", "no paper defaults");
    }

    /**
     * The paper's settings for this model: {@link #defaults()} unless a default depends on the model (LLM-Pruner's
     * kept first/last layers scale with the depth). What the pipeline uses.
     */
    default Defaults defaults(dev.lopper.model.config.ModelConfig config) {
        return defaults();
    }

    /**
     * Whether the scores are comparable across layers (what an allocation with one global threshold needs). Known
     * before scoring, so that a wrong allocation fails before a calibration pass.
     */
    default boolean comparableAcrossLayers() {
        return true;
    }

    /**
     * Fails with an {@link IllegalArgumentException} when the criterion cannot be used with {@code allocation}
     * (e.g. Wanda-sp's sequential order with a non-uniform allocation); called before any work.
     */
    default void check(Allocation.Options allocation) {
    }

    /**
     * Whether scoring with {@code allocation} also prunes, layer by layer, at that allocation's own ratio (the
     * sequential order of Wanda-sp's and GBLM's official code): such scores cannot be re-allocated afterwards, so a
     * schedule that allocates its own cumulative ratios refuses them.
     */
    default boolean prunesWhileScoring(Allocation.Options allocation) {
        return false;
    }

    /**
     * Scores the model's structures. Must fill at least the head scores of {@link Scores#headUnit()} and the
     * channel scores; {@link Scores#layers()} when the criterion supports layer removal.
     */
    Scores score(ScoringContext context);
}
