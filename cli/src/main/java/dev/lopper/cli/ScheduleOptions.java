package dev.lopper.cli;

import dev.lopper.pruning.PruneRequest;
import dev.lopper.recovery.LoraConfig;
import dev.lopper.recovery.TrainOptions;
import dev.lopper.recovery.schedule.ScheduleMethods;
import dev.lopper.recovery.schedule.ScheduleRequest;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;

/**
 * {@code lopper prune}'s options for scheduled pruning (training-aware methods such as {@code lora-prune}, and
 * {@code --iterative N} / {@code --iterative-steps N} for any criterion). It only parses: the schedule engine
 * ({@code dev.lopper.recovery.schedule.PruneSchedule}) does the work. Defaults are LoRAPrune's {@code prune.py}.
 */
final class ScheduleOptions {
    @Option(names = "--iterative", paramLabel = "N", description = "prune --ratio in N steps (Torch-Pruning's linear schedule), re-scoring the current model each step, with --train-steps-per-step LoRA steps between them")
    Integer iterative;

    @Option(names = "--iterative-steps", paramLabel = "N", description = "LLM-Pruner's --iterative_steps: N prune steps on Torch-Pruning's linear schedule, re-scored each step, no training between (default 1: one-shot)")
    Integer iterativeSteps;

    @Option(names = "--train-steps-per-step", defaultValue = "0", paramLabel = "N", description = "--iterative: LoRA optimizer steps between prune steps. Default: ${DEFAULT-VALUE}.")
    int trainStepsPerStep;

    @Option(names = "--train-data", paramLabel = "FILE", description = "training text for training-aware methods and --train-steps-per-step (.txt, .jsonl or a directory)")
    Path trainData;

    @Option(names = "--val-data", paramLabel = "FILE", description = "validation text; default: the last 5% of --train-data")
    Path valData;

    @Option(names = "--steps", paramLabel = "N", description = "lora-prune: optimizer steps of the whole run (pruning happens inside them)")
    Integer steps;

    @Option(names = "--prune-freq", paramLabel = "N", description = "lora-prune: prune every N steps. Default: 10 (LoRAPrune's prune_freq).")
    Integer pruneFreq;

    @Option(names = "--lora-rank", defaultValue = "8", description = "LoRA rank. Default: ${DEFAULT-VALUE} (LoRAPrune).")
    int loraRank;

    @Option(names = "--lora-alpha", defaultValue = "16", description = "LoRA alpha. Default: ${DEFAULT-VALUE} (LoRAPrune).")
    double loraAlpha;

    @Option(names = "--lora-dropout", defaultValue = "0.05", description = "LoRA dropout. Default: ${DEFAULT-VALUE} (LoRAPrune).")
    double loraDropout;

    @Option(names = "--lr", defaultValue = "3e-4", description = "peak learning rate (AdamW). Default: ${DEFAULT-VALUE} (LoRAPrune's prune.py).")
    double lr;

    @Option(names = "--micro-batch", defaultValue = "4", description = "windows per forward/backward. Default: ${DEFAULT-VALUE} (LoRAPrune's prune.py).")
    int microBatch;

    @Option(names = "--accumulation", defaultValue = "32", description = "micro-batches per optimizer step. Default: ${DEFAULT-VALUE} (batch 128 / micro-batch 4, LoRAPrune's prune.py).")
    int accumulation;

    @Option(names = "--train-seq-len", defaultValue = "256", description = "tokens per training window. Default: ${DEFAULT-VALUE} (LoRAPrune's cutoff_len).")
    int trainSeqLen;

    @Option(names = "--val-windows", defaultValue = "16", description = "validation windows per training phase. Default: ${DEFAULT-VALUE}.")
    int valWindows;

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

    ScheduleRequest request(PruneRequest p, long trainSeed) {
        Integer n = iterative != null ? iterative : iterativeSteps;
        PruneRequest q = p;
        if (pruneFreq != null) {
            java.util.Map<String, String> o = new java.util.LinkedHashMap<>(p.criterionOptions());
            o.put("prune-freq", pruneFreq.toString());
            q = new PruneRequest(p.model(), p.criterion(), o, p.ratio(), new LinkedHashSet<>(p.targets()), p.allocation(), p.headUnit(),
                    p.headRatio(), p.channelRatio(), p.keepFirst(), p.keepLast(), p.calibration(), p.calibField(), p.samples(), p.seqLen(),
                    p.seed(), p.chunkTokens(), p.applyPlan(), p.out(), p.planOut(), p.overwrite(), p.device(), p.progress(),
                    p.uniformRounding());
        }
        LoraConfig lora = new LoraConfig(loraRank, loraAlpha, loraDropout, java.util.Set.copyOf(LoraConfig.ALL_TARGETS));
        TrainOptions t = TrainOptions.defaults(Math.max(1, steps == null ? 1 : steps)).withMicroBatch(microBatch)
                .withAccumulation(accumulation).withSeqLen(trainSeqLen).withLearningRate(lr).withSeed(trainSeed);
        return new ScheduleRequest(q, ScheduleMethods.isMethod(p.criterion()) ? null : n,
                iterativeSteps != null ? 0 : trainStepsPerStep, steps, trainData, valData, lora, t, valWindows);
    }

    static List<String> names() {
        return List.copyOf(ScheduleMethods.names());
    }
}
