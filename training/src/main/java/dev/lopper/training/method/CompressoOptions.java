package dev.lopper.training.method;

import dev.lopper.training.job.Compresso;

import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.loop.TrainOptions;

import java.util.Set;

/**
 * How a Compresso run trains. Defaults are the official {@code scripts/train.sh} / {@code args.py} ones
 * (Moonlit/Compresso): LoRA r 8, alpha 8, no dropout on q_proj and v_proj ({@code --lora_param Q.V}), LoRA learning
 * rate 5e-5 with HF's linear decay, {@code --reg_learning_rate 0.1} for log_alpha and (negated: gradient ascent)
 * for lambda_1/lambda_2, {@code --droprate_init 0.01}, gradient clipping 1.0 (HF's max_grad_norm) on the LoRA
 * parameters only; the official 8 epochs with 1 epoch of pre-pruning fine-tuning ({@code prepruning_finetune_epochs})
 * and a 4-epoch linear warm-up of the target sparsity ({@code --lagrangian_warmup_epochs 4}) become fractions of
 * {@code steps}: 1/8 and 4/8.
 *
 * <pre>{@code
 * CompressoOptions o = CompressoOptions.defaults(0.3, 200);   // then o.trainOptions(20): the loop's options
 * }</pre>
 *
 * @param target target sparsity (fraction of head and channel parameters removed)
 * @param prepruningFraction share of the steps trained before the masks start (LoRA only)
 * @param warmupFraction share of the steps over which the target rises linearly from 0 (counted from the
 *                       start of pruning)
 * @param prompt the collaborative prompt prepended to every training window (its tokens carry no loss), or null
 */
public record CompressoOptions(double target, int steps, int microBatch, int accumulation, int seqLen, double loraLr,
                               double regLr, double droprateInit, double prepruningFraction, double warmupFraction,
                               double maxGradNorm, int checkpointEvery, long seed, String prompt, LoraConfig lora) {
    public CompressoOptions {
        if (!(target > 0 && target < 1)) {
            throw new IllegalArgumentException("--ratio " + target + ": expected a value in (0, 1)");
        }
        if (steps < 1 || microBatch < 1 || accumulation < 1) {
            throw new IllegalArgumentException("--steps, --micro-batch and --accumulation must be positive (found "
                    + steps + ", " + microBatch + ", " + accumulation + ")");
        }
        if (seqLen < 2) {
            throw new IllegalArgumentException("--seq-len " + seqLen + ": expected at least 2 tokens");
        }
        if (!(loraLr > 0) || !(regLr > 0)) {
            throw new IllegalArgumentException("--lr " + loraLr + " / --reg-lr " + regLr + ": expected positive learning rates");
        }
        if (!(prepruningFraction >= 0 && prepruningFraction < 1) || !(warmupFraction >= 0 && warmupFraction <= 1)) {
            throw new IllegalArgumentException("--prepruning-fraction " + prepruningFraction + " / --warmup-fraction " + warmupFraction
                    + ": expected values in [0, 1)");
        }
        if (checkpointEvery < 0 || maxGradNorm < 0) {
            throw new IllegalArgumentException("--checkpoint-every and --max-grad-norm must not be negative");
        }
    }

    /** The official LoRA: r 8, alpha 8, no dropout, q_proj and v_proj. */
    public static LoraConfig officialLora() {
        return new LoraConfig(8, 8, 0, Set.of("q_proj", "v_proj"));
    }

    /** The official settings for target sparsity {@code target} over {@code steps} steps of 1 window of 256 tokens. */
    public static CompressoOptions defaults(double target, int steps) {
        return new CompressoOptions(target, steps, 1, 1, 256, 5e-5, 0.1, 0.01, 1.0 / 8, 4.0 / 8, 1.0,
                Math.max(1, steps / 10), 42, null, officialLora());
    }

    /** Steps of LoRA-only training before the masks start: {@code round(steps x prepruningFraction)}. */
    public int prepruningSteps() {
        return (int) Math.round(steps * prepruningFraction);
    }

    /**
     * {@code get_target_sparsity} (linear scheduler, start 0) after {@code prunedSteps} steps of pruning; the warm-up
     * lasts {@code round(steps x warmupFraction)} steps.
     */
    public double targetAt(int prunedSteps) {
        int w = (int) Math.round(steps * warmupFraction);
        return w == 0 ? target : target * Math.min(1.0, (double) prunedSteps / w);
    }

    /** HF's linear schedule without warm-up: {@code lr (steps - step) / steps}. */
    public double loraLrAt(int step) {
        return loraLr * Math.max(0.0, (double) (steps - step) / steps);
    }

    /**
     * These settings as the training loop's options, validating every {@code evalEvery} steps: the batch, clipping,
     * checkpoints and seed (the learning rates are the parameter groups' own, without warm-up: HF's linear decay).
     */
    public TrainOptions trainOptions(int evalEvery) {
        return new TrainOptions(steps, microBatch, accumulation, seqLen, loraLr, 0, 0, maxGradNorm, evalEvery, checkpointEvery, 0, seed);
    }

    /** Training windows a run reads. */
    public int windows() {
        return steps * accumulation * microBatch;
    }

    /** The same run on other data windows, dropout and noise (they are all drawn from the seed). */
    public CompressoOptions withSeed(long s) {
        return new CompressoOptions(target, steps, microBatch, accumulation, seqLen, loraLr, regLr, droprateInit, prepruningFraction,
                warmupFraction, maxGradNorm, checkpointEvery, s, prompt, lora);
    }
}
