package dev.lopper.cli;

import dev.lopper.training.loop.TrainOptions;
import picocli.CommandLine.Option;

/**
 * The optimizer options of {@code prune-train} (as {@code lopper recover} spells them); defaults are the
 * recovery trainer's ({@link TrainOptions#defaults}, LLM-Pruner's post-training where a 2-core machine allows).
 */
final class TrainingOptions {
    @Option(names = "--lr", defaultValue = "3e-4", description = "peak learning rate (AdamW). Default: ${DEFAULT-VALUE}.")
    double lr;

    @Option(names = "--weight-decay", defaultValue = "0", description = "AdamW's decoupled weight decay. Default: ${DEFAULT-VALUE}.")
    double weightDecay;

    @Option(names = "--warmup", description = "linear warm-up steps before the cosine decay. Default: 10% of --steps.")
    Integer warmup;

    @Option(names = "--max-grad-norm", defaultValue = "1.0", description = "clip gradients to this global norm (0: off). Default: ${DEFAULT-VALUE}.")
    double maxGradNorm;

    @Option(names = "--micro-batch", defaultValue = "4", description = "windows per forward/backward. Default: ${DEFAULT-VALUE}.")
    int microBatch;

    @Option(names = "--accumulation", defaultValue = "4", description = "micro-batches per optimizer step. Default: ${DEFAULT-VALUE}.")
    int accumulation;

    @Option(names = "--seq-len", defaultValue = "256", description = "tokens per training window. Default: ${DEFAULT-VALUE}.")
    int seqLen;

    @Option(names = "--eval-every", description = "validation loss every N steps. Default: 10% of --steps.")
    Integer evalEvery;

    @Option(names = "--checkpoint-every", description = "checkpoint every N steps. Default: 10% of --steps.")
    Integer checkpointEvery;

    /** The options for a run of {@code steps} steps. */
    TrainOptions of(int steps, int patience, long seed) {
        TrainOptions d = TrainOptions.defaults(Math.max(1, steps));
        return new TrainOptions(steps, microBatch, accumulation, seqLen, lr, weightDecay, warmup != null ? warmup : d.warmup(),
                maxGradNorm, evalEvery != null ? evalEvery : d.evalEvery(), checkpointEvery != null ? checkpointEvery : d.checkpointEvery(),
                patience, seed);
    }
}
