package dev.lopper.training.method;

import ai.djl.Device;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.util.Progress;

import java.nio.file.Path;

/**
 * What a {@link ScheduleMethod} sees at a step.
 *
 * @param step the step (1-based) being run
 * @param model the current model (already pruned and trained by the earlier steps), open
 * @param modelDir its directory (an HF model directory any command reads)
 * @param original the original model's config
 * @param device where to compute
 * @param seed the run's seed
 * @param progress progress lines
 */
public record StepContext(int step, ModelDir model, Path modelDir, ModelConfig original, Device device, long seed,
                          Progress progress) {
}
