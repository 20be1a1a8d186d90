package dev.lopper.pruning.criteria;

import dev.lopper.pruning.allocation.Allocation;

/**
 * What the depth criteria (block influence, layer loss, angular distance) share: they score whole layers
 * ({@link Scores#layers()}) and each layer's attention and MLP ({@link Scores#sublayers()}), nothing inside a layer,
 * so they take {@code --targets layers} or {@code --targets sublayers} only.
 */
abstract class DepthCriterion implements Criterion {
    @Override
    public Need needs() {
        return Need.ACTIVATIONS;
    }

    @Override
    public boolean comparableAcrossLayers() {
        return true;
    }

    @Override
    public void check(Allocation.Options a) {
        for (String t : a.targets()) {
            if (!t.equals("layers") && !t.equals("sublayers")) {
                throw new IllegalArgumentException("--method " + name() + " scores layers and sublayers only; use --targets layers or "
                        + "--targets sublayers (found '" + t + "')");
            }
        }
    }

    static void requireCalibration(ScoringContext ctx, String name) {
        if (ctx.calibration() == null || ctx.calibration().length == 0) {
            throw new IllegalArgumentException("--method " + name + " needs calibration data: pass --calib FILE (text, .jsonl or a directory)");
        }
    }

    static boolean wantsSublayers(ScoringContext ctx) {
        return ctx.allocation() != null && ctx.allocation().sublayers();
    }

    static Scores scores(String name, double[] layers, double[][] sublayers) {
        return new Scores(name, true, dev.lopper.pruning.graph.StructureGraph.Kind.KV_GROUP, null, null, null, layers)
                .withSublayers(sublayers);
    }
}
