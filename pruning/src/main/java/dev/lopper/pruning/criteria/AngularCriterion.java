package dev.lopper.pruning.criteria;
import dev.lopper.pruning.allocation.Allocation;

/**
 * The angular distance of Gromov et al. 2024 ("The Unreasonable Ineffectiveness of the Deeper Layers", eq. 7):
 * for a block of n contiguous layers starting at l, {@code d(x^l, x^(l+n)) = arccos(cos(x^l_T, x^(l+n)_T)) / pi} of
 * the stream before layer l and after layer l+n-1 at each window's LAST token, averaged over windows; the block with
 * the smallest distance goes. No official code is published; arcee-ai/PruneMe ({@code compute_block_similarity/
 * utils.py}) computes the same per batch (cos clamped to [-1, 1]) and averages the batch means.
 *
 * <p>n is the number of layers allocation removes ({@code round(ratio x prunable layers)}, uniform's count), and a
 * layer's score is the smallest distance of any n-block inside the prunable layers that contains it, so the lowest
 * n scores are exactly the best block. Deviations: PruneMe drops the embedding output (its blocks start at layer 1)
 * and its last hidden state is HF's, after the final norm; Lopper uses x^0 = the embeddings and the raw stream.
 * Sublayers (Lopper's extension): the distance across one attention ({@code x -> x + attn(x)}) or one MLP, at the
 * last token. Defaults: 128 windows of 256 tokens (Lopper's; the paper does not fix them in code).
 */
public final class AngularCriterion extends DepthCriterion {
    public static final String NAME = "angular";

    public AngularCriterion() {
        super(NAME, 128, 256,
                "Gromov et al. 2024 eq. 7 (last token, mean over samples; arcee-ai/PruneMe); 128 x 256 is Lopper's",
                "mean over windows of arccos(cos(x^l, x^(l+n)))/pi at the last token; a layer scores its best n-block");
    }

    @Override
    public Scores score(ScoringContext ctx) {
        requireCalibration(ctx, NAME);
        var c = ctx.config();
        int n = c.numLayers();
        DepthPass.Dense d = DepthPass.dense(c, ctx.weights(), ctx.device(), ctx.calibration(), ctx.chunkTokens(), ctx.progress());
        Allocation.Options a = ctx.allocation();
        int first = a == null ? 0 : a.keepFirst();
        int end = a == null ? n : n - a.keepLast();
        int block = a == null || !a.layers() ? 1 : Math.max(1, Math.min((int) Math.round(a.ratio() * (end - first)), n - 1));
        double[] layers = blockScores(d.last(), first, end, block);
        double[][] sub = new double[n][2];
        for (int l = 0; l < n; l++) {
            sub[l][0] = DepthPass.meanAngular(d.last()[l], d.lastMid()[l]);
            sub[l][1] = DepthPass.meanAngular(d.lastMid()[l], d.last()[l + 1]);
        }
        return scores(NAME, layers, sub);
    }

    /**
     * Per layer j: the smallest mean angular distance over the {@code block}-blocks [l, l + block) inside
     * [first, end) that contain j; layers outside get the largest distance of all blocks (they are never removed).
     */
    static double[] blockScores(float[][][] last, int first, int end, int block) {
        int n = last.length - 1;
        double[] out = new double[n];
        java.util.Arrays.fill(out, Double.POSITIVE_INFINITY);
        double max = 0;
        for (int l = first; l + block <= end; l++) {
            double dist = DepthPass.meanAngular(last[l], last[l + block]);
            max = Math.max(max, dist);
            for (int j = l; j < l + block; j++) {
                out[j] = Math.min(out[j], dist);
            }
        }
        for (int j = 0; j < n; j++) {
            if (Double.isInfinite(out[j])) {
                out[j] = max + 1; // outside the prunable range, or no block fits: finite, above every block
            }
        }
        return out;
    }
}
