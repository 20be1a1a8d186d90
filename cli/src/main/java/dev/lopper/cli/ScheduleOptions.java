package dev.lopper.cli;

import dev.lopper.training.job.Compresso;

import dev.lopper.pruning.PruneRequest;
import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.job.ScheduleMethods;
import dev.lopper.training.job.ScheduleRequest;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;

/**
 * {@code lopper prune}'s options for scheduled pruning (training-aware methods such as {@code lora-prune}, and
 * {@code --iterative N} / {@code --iterative-steps N} for any criterion). It only parses: the schedule engine
 * ({@code dev.lopper.training.job.PruneSchedule}) does the work. Defaults are LoRAPrune's {@code prune.py}.
 */
final class ScheduleOptions {
    @Option(names = "--iterative", paramLabel = "N", description = "prune --ratio in N steps (Torch-Pruning's linear schedule), re-scoring the current model each step, with --train-steps-per-step LoRA steps between them")
    Integer iterative;

    @Option(names = "--iterative-steps", paramLabel = "N", description = "LLM-Pruner's --iterative_steps: N prune steps on Torch-Pruning's linear schedule, re-scored each step, no training between (default 1: one-shot)")
    Integer iterativeSteps;

    @Option(names = "--train-steps-per-step", defaultValue = "0", paramLabel = "N", description = "--iterative: LoRA optimizer steps between prune steps. Default: ${DEFAULT-VALUE}.")
    int trainStepsPerStep;

    @Option(names = "--steps", paramLabel = "N", description = "lora-prune: optimizer steps of the whole run (pruning happens inside them); adapt-pruner: training steps in all, shared out over the prune steps (instead of --train-steps-per-step)")
    Integer steps;

    // --prune-freq, --step-ratio, --criterion: method options (MethodOptions); PruneCommand.request puts them in the
    // request's options, so that they are recorded and compared on resume
    @Option(names = "--prune-freq", paramLabel = "N", description = "lora-prune: prune every N steps. Default: 10 (LoRAPrune's prune_freq).")
    Integer pruneFreq;

    @Option(names = "--step-ratio", paramLabel = "R", description = "adapt-pruner: prune R of the original prunable parameters per step. Default: 0.05 (the paper's).")
    Double stepRatio;

    @Option(names = "--criterion", paramLabel = "NAME", description = "adapt-pruner: the within-layer criterion (any --method criterion). Default: llm-pruner with --taylor param_first (the paper's).")
    String criterion;

    @Option(names = "--output-dtype", paramLabel = "DTYPE", description = "training-aware methods and --iterative: dtype of the final model: f32, bf16, f16 or keep. Default: keep (the input model's; the run says which it wrote).")
    String outputDtype;

    /** Whether {@code method} with these options runs on the schedule engine rather than as a one-shot prune. */
    boolean scheduled(String method) {
        if (iterative != null && iterativeSteps != null) {
            throw new IllegalArgumentException("--iterative and --iterative-steps: give one (--iterative-steps N is --iterative N without training)");
        }
        if (iterativeSteps != null && trainStepsPerStep > 0) {
            throw new IllegalArgumentException("--iterative-steps trains nothing between steps (LLM-Pruner's semantics); use --iterative N with --train-steps-per-step");
        }
        return ScheduleMethods.isMethod(method) || (iterative != null && iterative > 1) || (iterativeSteps != null && iterativeSteps > 1);
    }

    ScheduleRequest request(PruneRequest p, TrainingOptions training, long trainSeed) {
        Integer n = iterative != null ? iterative : iterativeSteps;
        // the method's own defaults where the user gives nothing (LoRAPrune's prune.py; Compresso's official ones)
        LoraConfig lora = training.lora(ScheduleMethods.loraDefaults(p.criterion()));
        TrainOptions d = ScheduleMethods.trainDefaults(p.criterion(), Math.max(1, steps == null ? 1 : steps), trainSeed);
        TrainOptions t = training.train(d);
        return new ScheduleRequest(p, ScheduleMethods.isMethod(p.criterion()) ? null : n,
                iterativeSteps != null ? 0 : trainStepsPerStep, steps, training.trainData, training.valData, lora, t,
                training.valWindows(), training.valFraction(), dev.lopper.training.job.OutputDtype.parse(outputDtype, "--output-dtype"));
    }
}
