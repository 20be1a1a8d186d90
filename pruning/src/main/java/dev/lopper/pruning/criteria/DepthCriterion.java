package dev.lopper.pruning.criteria;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.StructureGraph;

/**
 * What the depth criteria (block influence, layer loss, angular distance) share: they score whole layers
 * ({@link Scores#layers()}) and each layer's attention and MLP ({@link Scores#sublayers()}), nothing inside a layer,
 * so they take {@code --targets layers} or {@code --targets sublayers} only.
 */
abstract class DepthCriterion implements Criterion {
    private final String name;
    private final Defaults defaults;
    private final String statistic;

    /**
     * @param samples, seqLen the default calibration windows (allocation is uniform: the layer count it removes)
     * @param source where the defaults come from
     * @param statistic what a layer's score is, for the run's settings
     */
    DepthCriterion(String name, int samples, int seqLen, String source, String statistic) {
        this.name = name;
        this.defaults = new Defaults(samples, seqLen, "uniform", StructureGraph.Kind.KV_GROUP, 0, 0, source);
        this.statistic = statistic;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public Defaults defaults() {
        return defaults;
    }

    @Override
    public ObjectNode options() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("statistic", statistic);
        return o;
    }

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
