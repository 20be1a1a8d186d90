package dev.lopper.pruning.criteria;

import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A pruning criterion: scores every structure of a model ({@link dev.lopper.pruning.graph.StructureGraph}); it never decides how many to
 * cut (that is {@link dev.lopper.pruning.allocation.Allocation}) and never touches weights (that is {@link dev.lopper.pruning.surgery.Surgery}). One class per paper,
 * named after it ({@link MagnitudeCriterion}, Wanda-sp, FLAP, ...).
 */
public interface Criterion {
    /** The name used on the command line and in plans ("magnitude", "wanda-sp", ...). */
    String name();

    /** The criterion's settings, recorded in the plan ({@code criterionOptions}); null for none. */
    default ObjectNode options() {
        return null;
    }

    /** Whether {@link ScoringContext#calibration()} must be given. */
    default boolean needsCalibration() {
        return false;
    }

    /**
     * Scores the model's structures. Must fill at least the head scores of {@link Scores#headUnit()} and the
     * channel scores; {@link Scores#layers()} when the criterion supports layer removal.
     */
    Scores score(ScoringContext context);
}
