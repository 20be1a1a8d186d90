package dev.lopper.training.method;

import ai.djl.Device;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.util.Progress;

/**
 * What a {@link ScheduleMethod} sees at a step: the current model, held in memory by the schedule engine (already
 * pruned and trained by the earlier steps).
 *
 * <pre>{@code
 * Pruner.Scored s = Pruner.scoreOnly(c.config(), c.weights(), c.tokenizer(), request);
 * }</pre>
 *
 * @param step the step (1-based) being run
 * @param config the current model's config
 * @param weights the current model's weights (fp32, in memory)
 * @param tokenizer the model's tokenizer
 * @param original the original model's config
 * @param device where to compute
 * @param progress progress lines
 */
public record StepContext(int step, ModelConfig config, TensorSource weights, Tokenizer tokenizer, ModelConfig original, Device device,
                          Progress progress) {
}
