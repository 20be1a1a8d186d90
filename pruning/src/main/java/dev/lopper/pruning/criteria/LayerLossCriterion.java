package dev.lopper.pruning.criteria;

/**
 * Minitron's depth importance by LM loss (Muralidharan et al. 2024, "Compact Language Models via Pruning and
 * Knowledge Distillation", §2.2 / Fig. 7: "we drop a single layer and measure the LM validation loss"): a layer's
 * score is the mean next-token cross-entropy on the calibration windows with that layer dropped minus the dense
 * model's; the layers whose removal costs least go. One full layer-streamed calibration pass per layer (plus one
 * dense pass); with {@code --targets sublayers} one more per attention and per MLP (the layer run with 0 heads or 0
 * channels, exactly what surgery writes). Minitron's released code (NVIDIA/TensorRT-Model-Optimizer,
 * {@code mcore_minitron.py}) ranks depth by the cosine statistic instead ({@link BlockInfluenceCriterion}'s, as a
 * mean per batch); the loss ranking is the paper's. Defaults: 1024 windows (the paper's calibration samples) of 128
 * tokens (Lopper's; the fixture's context is 512).
 */
public final class LayerLossCriterion extends DepthCriterion {
    public static final String NAME = "layer-loss";

    public LayerLossCriterion() {
        super(NAME, 1024, 128,
                "Minitron (arXiv 2407.14679 §2.2: 1024 calibration samples, drop one layer, LM loss); 128 tokens is Lopper's",
                "mean next-token cross-entropy with the layer dropped minus the dense model's");
    }

    @Override
    public Scores score(ScoringContext ctx) {
        requireCalibration(ctx, NAME);
        var c = ctx.config();
        int n = c.numLayers();
        boolean sub = wantsSublayers(ctx);
        long[][] w = ctx.calibration();
        double base = DepthPass.loss(c, ctx.weights(), ctx.device(), w, ctx.chunkTokens(), -1, DepthPass.Drop.LAYER);
        ctx.progress().accept(String.format(java.util.Locale.ROOT, "layer-loss: dense loss %.5f", base));
        double[] layers = new double[n];
        double[][] sublayers = sub ? new double[n][2] : null;
        for (int l = 0; l < n; l++) {
            ctx.progress().accept("layer-loss: without layer " + (l + 1) + "/" + n);
            layers[l] = DepthPass.loss(c, ctx.weights(), ctx.device(), w, ctx.chunkTokens(), l, DepthPass.Drop.LAYER) - base;
            if (sub) {
                sublayers[l][0] = c.layer(l).numHeads() == 0 ? 0
                        : DepthPass.loss(c, ctx.weights(), ctx.device(), w, ctx.chunkTokens(), l, DepthPass.Drop.ATTENTION) - base;
                sublayers[l][1] = c.layer(l).intermediateSize() == 0 ? 0
                        : DepthPass.loss(c, ctx.weights(), ctx.device(), w, ctx.chunkTokens(), l, DepthPass.Drop.MLP) - base;
            }
        }
        return scores(NAME, layers, sublayers);
    }
}
