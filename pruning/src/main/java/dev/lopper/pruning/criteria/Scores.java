package dev.lopper.pruning.criteria;

import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.model.config.LayerShape;
import dev.lopper.pruning.surgery.PostSurgery;

/**
 * What a {@link Criterion} produces: an importance score per structure, higher = more important (kept first).
 * Indices are those of the {@link StructureGraph} the scores were computed on. Any array may be null when the
 * criterion does not score that kind; allocation fails clearly if it needs a missing one.
 *
 * @param criterion name of the criterion, for messages and provenance
 * @param comparableAcrossLayers whether scores of different layers (and of different kinds) can be ranked
 *                               against each other, as global allocation does; per-layer-only scores (e.g. raw
 *                               activation-weighted sums whose scale drifts with depth) must say false
 * @param headUnit the head structure the criterion ranks by default ({@link StructureGraph.Kind#KV_GROUP} or
 *                 {@link StructureGraph.Kind#QUERY_HEAD}), see docs/PRUNING.md for each criterion's choice
 * @param kvGroups [layer][numKvHeads] KV-group scores, or null
 * @param queryHeads [layer][numHeads] query-head scores, or null
 * @param channels [layer][intermediateSize] MLP-channel scores, or null
 * @param layers [layer] whole-layer scores (block pruning), or null
 * @param afterSurgery the criterion's step after surgery (FLAP's bias compensation), or {@link PostSurgery#NONE}
 * @param hidden [hiddenSize] residual-stream channel scores ({@link StructureGraph.Kind#HIDDEN_CHANNEL}), or null
 * @param sublayers [layer][2] scores of each layer's attention (index 0) and MLP (index 1) as a whole, for
 *                  removing one without the other (target "sublayers"), or null
 */
public record Scores(String criterion, boolean comparableAcrossLayers, StructureGraph.Kind headUnit,
                     double[][] kvGroups, double[][] queryHeads, double[][] channels, double[] layers,
                     PostSurgery afterSurgery, double[] hidden, double[][] sublayers) {

    /** Scores with no step after surgery. */
    public Scores(String criterion, boolean comparableAcrossLayers, StructureGraph.Kind headUnit, double[][] kvGroups,
                  double[][] queryHeads, double[][] channels, double[] layers) {
        this(criterion, comparableAcrossLayers, headUnit, kvGroups, queryHeads, channels, layers, PostSurgery.NONE);
    }

    /** Scores without hidden-channel or sublayer scores. */
    public Scores(String criterion, boolean comparableAcrossLayers, StructureGraph.Kind headUnit, double[][] kvGroups,
                  double[][] queryHeads, double[][] channels, double[] layers, PostSurgery afterSurgery) {
        this(criterion, comparableAcrossLayers, headUnit, kvGroups, queryHeads, channels, layers, afterSurgery, null, null);
    }

    /** These scores carrying {@code step} to run after surgery. */
    public Scores withAfterSurgery(PostSurgery step) {
        return new Scores(criterion, comparableAcrossLayers, headUnit, kvGroups, queryHeads, channels, layers, step, hidden, sublayers);
    }

    /** These scores with residual-stream channel scores {@code h} ([hiddenSize]). */
    public Scores withHidden(double[] h) {
        return new Scores(criterion, comparableAcrossLayers, headUnit, kvGroups, queryHeads, channels, layers, afterSurgery, h, sublayers);
    }

    /** These scores with sublayer scores {@code s} ([layer][attention, MLP]). */
    public Scores withSublayers(double[][] s) {
        return new Scores(criterion, comparableAcrossLayers, headUnit, kvGroups, queryHeads, channels, layers, afterSurgery, hidden, s);
    }

    /**
     * These scores with {@code layerScores} as the per-layer scores (an allocation's layer statistic, e.g.
     * Adapt-Pruner's layer importance, measured apart from the criterion).
     */
    public Scores withLayers(double[] layerScores) {
        return new Scores(criterion, comparableAcrossLayers, headUnit, kvGroups, queryHeads, channels, layerScores, afterSurgery,
                hidden, sublayers);
    }

    /**
     * {@code (x - mean) / std} with the unbiased std, as torch.std; a constant vector (or one value) maps to zeros.
     * FLAP standardizes its channel metrics this way, and adaptive allocation standardizes scores that are not
     * comparable across layers the same way.
     */
    public static double[] standardize(double[] x) {
        int n = x.length;
        double[] out = new double[n];
        if (n < 2) {
            return out;
        }
        double mean = 0;
        for (double v : x) {
            mean += v;
        }
        mean /= n;
        double ss = 0;
        for (double v : x) {
            ss += (v - mean) * (v - mean);
        }
        double std = Math.sqrt(ss / (n - 1));
        if (std == 0) {
            return out;
        }
        for (int i = 0; i < n; i++) {
            out[i] = (x[i] - mean) / std;
        }
        return out;
    }

    public Scores {
        afterSurgery = afterSurgery == null ? PostSurgery.NONE : afterSurgery;
        if (headUnit != StructureGraph.Kind.KV_GROUP && headUnit != StructureGraph.Kind.QUERY_HEAD) {
            throw new IllegalArgumentException("headUnit must be KV_GROUP or QUERY_HEAD, not " + headUnit);
        }
    }

    /** The scores of {@code kind}, or null. */
    public double[][] of(StructureGraph.Kind kind) {
        return switch (kind) {
            case KV_GROUP -> kvGroups;
            case QUERY_HEAD -> queryHeads;
            case MLP_CHANNEL -> channels;
            case LAYER -> layers == null ? null : toColumn(layers);
            case HIDDEN_CHANNEL -> hidden == null ? null : new double[][] {hidden};
        };
    }

    private static double[][] toColumn(double[] v) {
        double[][] out = new double[v.length][];
        for (int i = 0; i < v.length; i++) {
            out[i] = new double[] {v[i]};
        }
        return out;
    }

    /** Checks every present array against the graph's counts; a criterion bug fails here, not in surgery. */
    public void checkAgainst(StructureGraph graph) {
        int n = graph.numLayers();
        for (StructureGraph.Kind k : new StructureGraph.Kind[] {StructureGraph.Kind.KV_GROUP, StructureGraph.Kind.QUERY_HEAD,
                StructureGraph.Kind.MLP_CHANNEL}) {
            double[][] s = of(k);
            if (s == null) {
                continue;
            }
            if (s.length != n) {
                throw new IllegalStateException(criterion + ": " + k + " scores for " + s.length + " layers, model has " + n);
            }
            for (int l = 0; l < n; l++) {
                LayerShape shape = graph.config().layer(l);
                int want = k == StructureGraph.Kind.KV_GROUP ? shape.numKvHeads()
                        : k == StructureGraph.Kind.QUERY_HEAD ? shape.numHeads() : shape.intermediateSize();
                if (s[l].length != want) {
                    throw new IllegalStateException(criterion + ": layer " + l + " has " + s[l].length + " " + k + " scores, expected " + want);
                }
                for (double x : s[l]) {
                    if (Double.isNaN(x)) {
                        throw new IllegalStateException(criterion + ": layer " + l + " has a NaN " + k + " score");
                    }
                }
            }
        }
        if (layers != null && layers.length != n) {
            throw new IllegalStateException(criterion + ": " + layers.length + " layer scores, model has " + n);
        }
        if (hidden != null && hidden.length != graph.config().hiddenSize()) {
            throw new IllegalStateException(criterion + ": " + hidden.length + " hidden-channel scores, model has "
                    + graph.config().hiddenSize());
        }
        if (sublayers != null && sublayers.length != n) {
            throw new IllegalStateException(criterion + ": " + sublayers.length + " sublayer scores, model has " + n + " layers");
        }
        for (double[] a : new double[][] {hidden, layers}) {
            for (double x : a == null ? new double[0] : a) {
                if (Double.isNaN(x)) {
                    throw new IllegalStateException(criterion + ": a NaN hidden-channel or layer score");
                }
            }
        }
    }
}
