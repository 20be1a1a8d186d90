package dev.lopper.pruning.criteria;

/**
 * ShortGPT's Block Influence (Men et al. 2024; official code icip-cas/ShortGPT, {@code shortgpt/metrics.py::
 * block_influence} and {@code shortgpt.py::compute_bi}): a layer's importance is the sum over every calibration
 * token of {@code 1 - cos(x_in, x_out)} of its input and output hidden states, a NaN cosine counted as 0.5
 * ({@code nan_to_num(nan=0.5)}); the lowest-scored layers go. Sublayers (Lopper's extension, the same statistic):
 * the attention's {@code 1 - cos(x, x + attn(x))} and the MLP's {@code 1 - cos(h, h + mlp(h))}.
 *
 * <p>Deviation: the official code reads HF's {@code output_hidden_states}, whose last entry is already through the
 * final RMSNorm, so its last layer is compared with a normed output; Lopper compares every layer's raw output.
 * Defaults: windows of 256 tokens (the official {@code stride=256}); PG19's validation split, which the official
 * script streams whole, is not available here, so 128 windows of the calibration text (Lopper's count).
 */
public final class BlockInfluenceCriterion extends DepthCriterion {
    public static final String NAME = "block-influence";

    public BlockInfluenceCriterion() {
        super(NAME, 128, 256,
                "ShortGPT (icip-cas/ShortGPT shortgpt/run_shortgpt.py: stride 256; 128 windows is Lopper's, PG19 is not at hand)",
                "sum over tokens of 1 - cos(x_in, x_out), NaN cos = 0.5");
    }

    @Override
    public Scores score(ScoringContext ctx) {
        requireCalibration(ctx, NAME);
        DepthPass.Dense d = DepthPass.dense(ctx.config(), ctx.weights(), ctx.device(), ctx.calibration(), ctx.chunkTokens(), ctx.progress());
        return scores(NAME, d.cosine(), d.cosineSub());
    }
}
