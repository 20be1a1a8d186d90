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

    @Option(names = "--warmup", description = "linear warm-up steps before the cosine decay. Default: a tenth of --steps.")
    Integer warmup;

    @Option(names = "--max-grad-norm", defaultValue = "1.0", description = "clip gradients to this global norm (0: off). Default: ${DEFAULT-VALUE}.")
    double maxGradNorm;

    @Option(names = "--micro-batch", defaultValue = "4", description = "windows per forward/backward. Default: ${DEFAULT-VALUE}.")
    int microBatch;

    @Option(names = "--accumulation", defaultValue = "4", description = "micro-batches per optimizer step. Default: ${DEFAULT-VALUE}.")
    int accumulation;

    /** Null when not given: the default (256) is put in by {@link #of}, so that the hidden old spelling can set it too. */
    @Option(names = "--train-seq-len", paramLabel = "N", description = "tokens per training window. Default: 256.")
    Integer seqLen;

    /** The old spelling of {@code --train-seq-len} (what {@code lopper recover} called the training window), kept hidden. */
    @Option(names = "--seq-len", hidden = true, paramLabel = "N")
    void oldSeqLen(int n) {
        seqLen = n;
    }

    @Option(names = "--eval-every", description = "validation loss every N steps. Default: a tenth of --steps.")
    Integer evalEvery;

    @Option(names = "--checkpoint-every", description = "checkpoint every N steps. Default: a tenth of --steps.")
    Integer checkpointEvery;

    /** The options for a run of {@code steps} steps. */
    TrainOptions of(int steps, int patience, long seed) {
        TrainOptions d = TrainOptions.defaults(Math.max(1, steps));
        return new TrainOptions(steps, microBatch, accumulation, seqLen != null ? seqLen : d.seqLen(), lr, weightDecay, warmup != null ? warmup : d.warmup(),
                maxGradNorm, evalEvery != null ? evalEvery : d.evalEvery(), checkpointEvery != null ? checkpointEvery : d.checkpointEvery(),
                patience, seed);
    }
}
