package dev.lopper.training.loop;

/**
 * How a recovery run trains. Defaults follow LLM-Pruner's post-training where a 2-core machine allows (its
 * learning rate 3e-4, sequence length 256, micro-batch 4, gradient clipping 1.0, no weight decay; its batch of 128
 * and 100 warm-up steps are scaled down: 4 x 4 windows and 10% of the steps), with a cosine schedule.
 *
 * <pre>{@code
 * TrainOptions o = TrainOptions.defaults(200).withBatch(2, 8, 256).withLearningRate(1e-4);
 * }</pre>
 *
 * @param steps optimizer steps
 * @param accumulation micro-batches per optimizer step (their gradients are averaged)
 * @param warmup linear warm-up steps before the cosine decay
 * @param maxGradNorm clip gradients to this global L2 norm (0: no clipping)
 * @param evalEvery validation loss every this many steps (and at the end)
 * @param checkpointEvery checkpoint every this many steps (0: only at the end and on interruption)
 * @param patience stop after this many validations without a lower validation loss (0: never stop early)
 */
public record TrainOptions(int steps, int microBatch, int accumulation, int seqLen, double learningRate, double weightDecay,
                           int warmup, double maxGradNorm, int evalEvery, int checkpointEvery, int patience, long seed) {
    public TrainOptions {
        positive(steps, "--steps");
        positive(microBatch, "--micro-batch");
        positive(accumulation, "--accumulation");
        positive(evalEvery, "--eval-every");
        if (seqLen < 2) {
            throw new IllegalArgumentException("--seq-len " + seqLen + ": expected at least 2 tokens");
        }
        if (!(learningRate > 0)) {
            throw new IllegalArgumentException("--lr " + learningRate + ": expected a positive learning rate");
        }
        if (warmup < 0 || checkpointEvery < 0 || patience < 0 || weightDecay < 0 || maxGradNorm < 0) {
            throw new IllegalArgumentException("--warmup, --checkpoint-every, --patience, --weight-decay and --max-grad-norm must not be negative");
        }
    }

    private static void positive(int v, String option) {
        if (v < 1) {
            throw new IllegalArgumentException(option + " " + v + ": expected a positive number");
        }
    }

    public static TrainOptions defaults(int steps) {
        return new TrainOptions(steps, 4, 4, 256, 3e-4, 0, Math.max(0, steps / 10), 1.0, Math.max(1, steps / 10),
                Math.max(1, steps / 10), 0, 42);
    }

    /** Training windows a run reads. */
    public int windows() {
        return steps * accumulation * microBatch;
    }

    public TrainOptions withSteps(int n) {
        return new TrainOptions(n, microBatch, accumulation, seqLen, learningRate, weightDecay, warmup, maxGradNorm, evalEvery, checkpointEvery, patience, seed);
    }

    /** The batch shape: {@code micro} windows of {@code tokens} tokens per forward, {@code accumulated} forwards per step. */
    public TrainOptions withBatch(int micro, int accumulated, int tokens) {
        return new TrainOptions(steps, micro, accumulated, tokens, learningRate, weightDecay, warmup, maxGradNorm, evalEvery, checkpointEvery, patience, seed);
    }

    public TrainOptions withLearningRate(double lr) {
        return new TrainOptions(steps, microBatch, accumulation, seqLen, lr, weightDecay, warmup, maxGradNorm, evalEvery, checkpointEvery, patience, seed);
    }

    /** Validation every {@code validation} steps, a checkpoint every {@code checkpoint} steps. */
    public TrainOptions withEvery(int validation, int checkpoint) {
        return new TrainOptions(steps, microBatch, accumulation, seqLen, learningRate, weightDecay, warmup, maxGradNorm, validation, checkpoint, patience, seed);
    }

    public TrainOptions withWarmup(int w) {
        return new TrainOptions(steps, microBatch, accumulation, seqLen, learningRate, weightDecay, w, maxGradNorm, evalEvery, checkpointEvery, patience, seed);
    }

    /** The same run on other data windows, dropout and noise (they are all drawn from the seed). */
    public TrainOptions withSeed(long s) {
        return new TrainOptions(steps, microBatch, accumulation, seqLen, learningRate, weightDecay, warmup, maxGradNorm, evalEvery, checkpointEvery, patience, s);
    }
}
