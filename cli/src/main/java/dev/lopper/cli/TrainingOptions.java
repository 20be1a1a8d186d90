package dev.lopper.cli;

import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.loop.TrainOptions;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;

/**
 * The training options of every command that trains (one declaration, one name each): {@code lopper recover},
 * {@code lopper prune}'s training-aware methods, {@code --iterative} ({@link ScheduleOptions}) and
 * {@code --recover-steps} ({@link RecoverOptions}). Every option is null when
 * not given, so that each job fills in its own paper's defaults ({@link #train}, {@link #lora}) and says which it
 * used.
 */
final class TrainingOptions {
    @Option(names = "--train-data", paramLabel = "FILE", description = "training text for training-aware methods, --train-steps-per-step and --recover-steps (.txt, .jsonl or a directory). With --recover-steps the default is the --calib text.")
    Path trainData;

    @Option(names = "--val-data", paramLabel = "FILE", description = "validation text. Default: the last --val-fraction of the training text.")
    Path valData;

    @Option(names = "--val-fraction", description = "share of the training text held out without --val-data. Default: 0.05.")
    Double valFraction;

    @Option(names = "--val-windows", description = "validation windows (0: no validation). Default: 16.")
    Integer valWindows;

    @Option(names = "--lora-rank", description = "LoRA rank. Default: 8 (LLM-Pruner's post-training and LoRAPrune).")
    Integer rank;

    @Option(names = "--lora-alpha", description = "LoRA alpha. Default: 16.")
    Double alpha;

    @Option(names = "--lora-dropout", description = "dropout on the adapters' input. Default: 0.05.")
    Double dropout;

    @Option(names = "--lora-targets", split = ",", paramLabel = "PROJ", description = "projections to adapt. Default: all seven.")
    List<String> targets;

    @Option(names = "--lr", description = "peak learning rate (AdamW). Default: 3e-4.")
    Double lr;

    @Option(names = "--weight-decay", description = "AdamW weight decay. Default: 0.")
    Double weightDecay;

    @Option(names = "--warmup", description = "warm-up steps. Default: a tenth of the steps.")
    Integer warmup;

    @Option(names = "--max-grad-norm", description = "gradient clipping norm (0: off). Default: 1.0.")
    Double maxGradNorm;

    @Option(names = "--micro-batch", description = "windows per forward/backward. Default: 4.")
    Integer microBatch;

    @Option(names = "--accumulation", description = "micro-batches per optimizer step. Default: the method's (recovery 4; lora-prune 32 = LoRAPrune's batch 128 / micro-batch 4).")
    Integer accumulation;

    @Option(names = "--train-seq-len", paramLabel = "N", description = "tokens per training window (as lopper recover). Default: 256.")
    Integer seqLen;

    @Option(names = "--eval-every", description = "validation every N steps. Default: a tenth of the steps.")
    Integer evalEvery;

    @Option(names = "--checkpoint-every", description = "checkpoint every N steps. Default: a tenth of the steps.")
    Integer checkpointEvery;

    @Option(names = "--patience", description = "early stop after N validations without improvement (0: off). Default: 0.")
    Integer patience;

    /** {@code defaults} with every option given here put in its place. */
    TrainOptions train(TrainOptions d) {
        return new TrainOptions(d.steps(), or(microBatch, d.microBatch()), or(accumulation, d.accumulation()), or(seqLen, d.seqLen()),
                or(lr, d.learningRate()), or(weightDecay, d.weightDecay()), or(warmup, d.warmup()), or(maxGradNorm, d.maxGradNorm()),
                or(evalEvery, d.evalEvery()), or(checkpointEvery, d.checkpointEvery()), or(patience, d.patience()), d.seed());
    }

    /** {@code defaults} with the LoRA options given here put in their place. */
    LoraConfig lora(LoraConfig d) {
        return new LoraConfig(or(rank, d.rank()), or(alpha, d.alpha()), or(dropout, d.dropout()),
                targets == null ? d.targets() : new LinkedHashSet<>(targets));
    }

    double valFraction() {
        return or(valFraction, 0.05);
    }

    int valWindows() {
        return or(valWindows, 16);
    }

    static <T> T or(T v, T d) {
        return v != null ? v : d;
    }
}
