package dev.lopper.cli;


import dev.lopper.training.distill.Distillation;
import picocli.CommandLine.Option;

import java.nio.file.Path;

/**
 * The distillation options of {@code lopper recover} and {@code lopper prune ... --recover-steps N}: the dense
 * teacher, the loss's weight and temperature (Minitron's defaults, {@link Distillation#of}), the teacher cache and
 * its k, the hidden-state loss, and {@code --full} (every weight trained instead of LoRA adapters). Null when not given.
 */
final class DistillOptions {
    /** The option names, in the order --help lists them. */
    static final java.util.List<String> NAMES = java.util.List.of("--teacher", "--kd-alpha", "--kd-temperature", "--teacher-cache",
            "--kd-top-k", "--hidden-loss", "--hidden-layers", "--hidden-weight", "--full");

    @Option(names = "--teacher", paramLabel = "DIR", description = "distil from this dense model (usually the unpruned one; same vocabulary): "
            + "the loss is kd-alpha * T^2 * KL(teacher_T || student_T) + (1 - kd-alpha) * cross-entropy. The teacher runs layer by layer "
            + "without gradients on every micro-batch, unless --teacher-cache is given.")
    Path teacher;

    @Option(names = "--kd-alpha", paramLabel = "A", description = "with --teacher: weight of the KL term (1 - A weighs the cross-entropy). "
            + "Default: 1 (Minitron: logit-only KL).")
    Double alpha;

    @Option(names = "--kd-temperature", paramLabel = "T", description = "with --teacher: softmax temperature of teacher and student. Default: 1 (Minitron).")
    Double temperature;

    @Option(names = "--teacher-cache", paramLabel = "DIR", description = "with --teacher: the teacher's top-k log-probabilities on the training windows, "
            + "built in DIR on first use (one teacher pass) and reused by every run with the same teacher, windows, T and k; verified by its SHA-256.")
    Path cache;

    @Option(names = "--kd-top-k", paramLabel = "K", description = "with --teacher-cache: log-probabilities kept per token (the rest as one tail mass; "
            + "8 + 6K bytes a token). Default: 256.")
    Integer topK;

    @Option(names = "--hidden-loss", paramLabel = "cosine|mse", description = "with --teacher: add a loss between the student's and the teacher's "
            + "residual streams after --hidden-layers (each student layer against the teacher layer it came from). Default: off.")
    String hiddenLoss;

    @Option(names = "--hidden-layers", split = ",", paramLabel = "L", description = "with --hidden-loss: student layers compared (0-based). Default: every layer.")
    java.util.List<Integer> hiddenLayers;

    @Option(names = "--hidden-weight", paramLabel = "W", description = "with --hidden-loss: its weight in the loss. Default: 1.")
    Double hiddenWeight;

    @Option(names = "--full", description = "train every weight (fp32 weights, gradients and AdamW moments in memory: 16 bytes a parameter) "
            + "instead of LoRA adapters; the learning rate then defaults to 1e-4")
    boolean full;

    /** The settings, or null without {@code --teacher} (options that need it are refused in one line). */
    Distillation distillation() {
        if (teacher == null) {
            String orphan = alpha != null ? "--kd-alpha" : temperature != null ? "--kd-temperature" : cache != null ? "--teacher-cache"
                    : topK != null ? "--kd-top-k" : hiddenLoss != null ? "--hidden-loss" : null;
            if (orphan != null) {
                throw new IllegalArgumentException(orphan + ": only with --teacher DIR (distillation from a dense model)");
            }
            return null;
        }
        if (topK != null && cache == null) {
            throw new IllegalArgumentException("--kd-top-k: only with --teacher-cache DIR (the streamed teacher gives the full vocabulary)");
        }
        if (hiddenLoss == null && (hiddenLayers != null || hiddenWeight != null)) {
            throw new IllegalArgumentException((hiddenLayers != null ? "--hidden-layers" : "--hidden-weight") + ": only with --hidden-loss cosine|mse");
        }
        Distillation d = Distillation.of(teacher);
        d = hiddenLoss != null ? d.withHidden(hiddenLoss, hiddenLayers, hiddenWeight != null ? hiddenWeight : 1.0) : d;
        d = alpha != null ? d.withAlpha(alpha) : d;
        d = temperature != null ? d.withTemperature(temperature) : d;
        d = cache != null ? d.withCache(cache) : d;
        return topK != null ? d.withTopK(topK) : d;
    }

    /** The first distillation option given (its name), or null: a path that does not recover refuses it. */
    String firstGiven() {
        return teacher != null ? "--teacher" : alpha != null ? "--kd-alpha" : temperature != null ? "--kd-temperature"
                : cache != null ? "--teacher-cache" : topK != null ? "--kd-top-k" : hiddenLoss != null ? "--hidden-loss"
                : hiddenLayers != null ? "--hidden-layers" : hiddenWeight != null ? "--hidden-weight" : full ? "--full" : null;
    }
}
