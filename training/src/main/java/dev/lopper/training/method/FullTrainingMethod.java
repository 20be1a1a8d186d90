package dev.lopper.training.method;

import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.training.loop.FullModel;
import dev.lopper.training.loop.FullTrainee;
import dev.lopper.training.loop.TrainingMethod;

import java.util.List;

/**
 * A method that prunes while training every weight (EfficientLLM, BiP): a {@link TrainingMethod} on a
 * {@link FullTrainee}, plus what the job needs to write its plan. The job ({@code PruneWhileTraining}) runs it on the
 * one loop; registering it is one line in {@code ScheduleMethods}.
 *
 * <pre>{@code
 * ScheduleMethods.register(new ScheduleMethods.Entry("my-method", Set.of(), PruneWhileTraining.job(MyMethod::new),
 *         ScheduleMethods::fullTrainingDefaults, null));
 * }</pre>
 */
public interface FullTrainingMethod extends TrainingMethod<FullTrainee> {
    /** What the run keeps, one selection per layer on the ORIGINAL model's indices (the plan). */
    List<LayerSelection> kept();

    /** The plan's allocation: how the method spreads its cuts ("global", "uniform"). */
    String allocation();

    /** Applied to every layer in the training forward pass and validation, asked anew each pass (BiP's mask). */
    default FullModel.LayerTransform transform() {
        return FullModel.LayerTransform.NONE;
    }
}
