package dev.lopper.training.job;

import dev.lopper.pruning.PruneRequest;
import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.loop.TrainOptions;

import java.nio.file.Path;

/**
 * A scheduled (iterative or training-aware) prune for {@link PruneSchedule}.
 *
 * <pre>{@code
 * ScheduleRequest r = new ScheduleRequest(PruneRequest.builder(model).criterion("magnitude").ratio(0.5).out(out).build(),
 *         4, 10, null, data, null, LoraConfig.defaults(), TrainOptions.defaults(10), 4, 0.05, null);
 * }</pre>
 *
 * @param prune the prune settings: model, {@code criterion} (a criterion for {@code --iterative}, or a method
 *              registered in {@link ScheduleMethods}), its options, ratio (the final one), targets, allocation,
 *              calibration, seed, {@code out} (the final model), overwrite, device, progress
 * @param iterations prune steps for an iterative criterion ({@code --iterative N}); null for a method's own schedule
 * @param trainStepsPerStep optimizer steps of LoRA training after each prune step but the last ({@code --iterative})
 * @param steps total training steps of a training-aware method ({@code --steps}); null for its default
 * @param data training text (needed when any step trains)
 * @param val validation text, or null to hold out 5% of {@code data}
 * @param lora the adapters' settings
 * @param train optimizer settings; its {@code steps} is replaced by each phase's
 * @param valWindows validation windows per training phase
 * @param valFraction the share of {@code data} held out for validation when {@code val} is null
 * @param outputType dtype of the final model ({@code --output-dtype}), or null for the input model's
 */
public record ScheduleRequest(PruneRequest prune, Integer iterations, int trainStepsPerStep, Integer steps, Path data, Path val,
                              LoraConfig lora, TrainOptions train, int valWindows, double valFraction,
                              ai.djl.ndarray.types.DataType outputType) {
    public ScheduleRequest {
        if (val == null && !(valFraction > 0 && valFraction < 1)) {
            throw new IllegalArgumentException("--val-fraction " + valFraction + ": expected a value in (0, 1)");
        }
        if (prune.out() == null) {
            throw new IllegalArgumentException("a scheduled prune needs --out DIR (the final model)");
        }
        if (prune.ratio() == null) {
            throw new IllegalArgumentException("--ratio is required (the final fraction of prunable parameters to remove)");
        }
        if (trainStepsPerStep < 0) {
            throw new IllegalArgumentException("--train-steps-per-step " + trainStepsPerStep + ": expected >= 0");
        }
        if (prune.targets().contains("layers")) {
            throw new IllegalArgumentException("--targets layers: scheduled pruning removes heads and channels only (a removed "
                    + "layer renumbers the rest, so --keep-first/--keep-last would shift between steps)");
        }
    }
}
