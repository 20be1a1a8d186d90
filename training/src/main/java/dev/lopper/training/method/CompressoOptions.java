package dev.lopper.training.method;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
 * CompressoOptions o = CompressoOptions.defaults(0.3, 200);   // o.train(): the loop's options
 * }</pre>
 *
 * @param train the loop's options: Compresso's batch, LoRA learning rate, clipping (on LoRA), checkpoints and seed;
 *              no weight decay, warm-up or early stop, validation every step (the groups' rates are their own)
 * @param target target sparsity (fraction of head and channel parameters removed)
 * @param prepruningFraction share of the steps trained before the masks start (LoRA only)
 * @param warmupFraction share of the steps over which the target rises linearly from 0 (counted from the
 *                       start of pruning)
 * @param prompt the collaborative prompt prepended to every training window (its tokens carry no loss), or null
 */
public record CompressoOptions(TrainOptions train, double target, double regLr, double droprateInit, double prepruningFraction,
                               double warmupFraction, String prompt, LoraConfig lora) {
    private static final ObjectMapper JSON = new ObjectMapper();

    public CompressoOptions {
        if (!(target > 0 && target < 1)) {
            throw new IllegalArgumentException("--ratio " + target + ": expected a value in (0, 1)");
        }
        if (!(regLr > 0)) {
            throw new IllegalArgumentException("--lr " + train.learningRate() + " / --reg-lr " + regLr + ": expected positive learning rates");
        }
        if (!(prepruningFraction >= 0 && prepruningFraction < 1) || !(warmupFraction >= 0 && warmupFraction <= 1)) {
            throw new IllegalArgumentException("--prepruning-fraction " + prepruningFraction + " / --warmup-fraction " + warmupFraction
                    + ": expected values in [0, 1)");
        }
    }

    /** The official LoRA: r 8, alpha 8, no dropout, q_proj and v_proj. */
    public static LoraConfig officialLora() {
        return new LoraConfig(8, 8, 0, Set.of("q_proj", "v_proj"));
    }

    /**
     * The official settings for target sparsity {@code target} over {@code steps} steps of 1 window of 256 tokens
     * (the loop's options: gradient clipping 1.0, no weight decay, warm-up or early stop, validation every step).
     */
    public static CompressoOptions defaults(double target, int steps) {
        TrainOptions train = new TrainOptions(steps, 1, 1, 256, 5e-5, 0, 0, 1.0, 1, Math.max(1, steps / 10), 0, 42);
        return new CompressoOptions(train, target, 0.1, 0.01, 1.0 / 8, 4.0 / 8, null, officialLora());
    }

    /** Steps of LoRA-only training before the masks start: {@code round(steps x prepruningFraction)}. */
    public int prepruningSteps() {
        return (int) Math.round(train.steps() * prepruningFraction);
    }

    /**
     * {@code get_target_sparsity} (linear scheduler, start 0) after {@code prunedSteps} steps of pruning; the warm-up
     * lasts {@code round(steps x warmupFraction)} steps.
     */
    public double targetAt(int prunedSteps) {
        int w = (int) Math.round(train.steps() * warmupFraction);
        return w == 0 ? target : target * Math.min(1.0, (double) prunedSteps / w);
    }

    /** HF's linear schedule without warm-up: {@code lr (steps - step) / steps}. */
    public double loraLrAt(int step) {
        return train.learningRate() * Math.max(0.0, (double) (train.steps() - step) / train.steps());
    }

    /**
     * The settings as JSON with the field names and order of the job folders (job.json, checkpoints, the plan's
     * provenance) that the flat record of earlier versions wrote: a folder written by one resumes with the other.
     */
    public ObjectNode json() {
        ObjectNode n = JSON.createObjectNode();
        n.put("target", target).put("steps", train.steps()).put("microBatch", train.microBatch()).put("accumulation", train.accumulation());
        n.put("seqLen", train.seqLen()).put("loraLr", train.learningRate()).put("regLr", regLr).put("droprateInit", droprateInit);
        n.put("prepruningFraction", prepruningFraction).put("warmupFraction", warmupFraction).put("maxGradNorm", train.maxGradNorm());
        n.put("checkpointEvery", train.checkpointEvery()).put("seed", train.seed()).put("prompt", prompt);
        n.set("lora", JSON.valueToTree(lora));
        return n;
    }
}
