package dev.lopper.pruning.surgery;

import ai.djl.ndarray.NDManager;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

/**
 * A criterion's step after surgery (FLAP's bias compensation, {@link BiasCompensation}); it travels with the
 * criterion's scores ({@code Scores.afterSurgery()}), so the pipeline runs it without knowing the criterion.
 *
 * <pre>{@code
 * Surgery.Result r = Surgery.apply(config, checkpoint, selections);
 * r = scores.afterSurgery().apply(config, checkpoint, r, manager);
 * }</pre>
 */
public interface PostSurgery {
    /** Does nothing. */
    PostSurgery NONE = new PostSurgery() {
        @Override
        public Surgery.Result apply(ModelConfig original, TensorSource originalWeights, Surgery.Result pruned, NDManager manager) {
            return pruned;
        }

        @Override
        public String description() {
            return "none";
        }
    };

    /**
     * @param original the config the plan was made for
     * @param originalWeights the un-pruned weights
     * @param pruned the surgery result
     * @param manager owns any new tensors; must stay open until the result is saved
     */
    Surgery.Result apply(ModelConfig original, TensorSource originalWeights, Surgery.Result pruned, NDManager manager);

    /** What the step does, for the run's summary ("bias compensation (FLAP)"). */
    String description();
}
