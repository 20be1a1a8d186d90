package dev.lopper.cli;

import dev.lopper.training.job.OutputDtype;
import dev.lopper.training.job.Recovery;
import dev.lopper.training.job.ScheduleMethods;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.lora.LoraConfig;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * The recovery options of {@code lopper recover} and {@code lopper prune ... --recover-steps N} beside the training
 * options ({@link TrainingOptions}): the merged model's dtype, streaming and distillation (one declaration each);
 * {@link #settings} makes the job's {@link Recovery.Settings} of them all.
 */
final class RecoverySettingsOptions {
    @Option(names = "--merged-dtype", defaultValue = "keep", description = "dtype of the merged model: f32, bf16, f16 or keep (as the input; the run says which it wrote). Default: ${DEFAULT-VALUE}.")
    String mergedDtype;

    /** --teacher, --kd-alpha, --kd-temperature, --teacher-cache, --kd-top-k, the hidden-state loss, --full. */
    @Mixin
    DistillOptions distill;

    @Option(names = "--stream", description = "hold one decoder layer's weights at a time (recomputed in the backward), for models larger than memory")
    boolean stream;

    /**
     * The settings of a recovery: {@code defaults} (steps and seed) with the options given here and in {@code training}.
     * With --full the LoRA options given are refused in one line, and the learning rate defaults to full-parameter
     * training's (a --lr given still wins).
     */
    Recovery.Settings settings(TrainingOptions training, TrainOptions defaults) {
        TrainOptions d = defaults;
        if (distill.full) {
            String lora = training.rank != null ? "--lora-rank" : training.alpha != null ? "--lora-alpha" : training.dropout != null
                    ? "--lora-dropout" : training.targets != null ? "--lora-targets" : stream ? "--stream" : null;
            if (lora != null) {
                throw new IllegalArgumentException(lora + ": LoRA's; --full trains every weight");
            }
            d = d.withLearningRate(ScheduleMethods.FULL_TRAINING_LR); // as EfficientLLM's and BiP's
        }
        TrainOptions o = training.train(d); // before the LoRA settings: the first bad option is the one reported
        return new Recovery.Settings(training.trainData, training.valData, training.lora(LoraConfig.defaults()), o, training.valFraction(),
                training.valWindows(), OutputDtype.parse(mergedDtype, "--merged-dtype"), stream, distill.distillation(), distill.full);
    }
}
