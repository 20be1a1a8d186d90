package dev.lopper.pruning.criteria;

import dev.lopper.pruning.graph.StructureGraph;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.config.ModelConfig;

/**
 * Weight magnitude, no calibration data: the score of a structure is the mean of {@code |w|^p} over every weight
 * of the structure (all its member slices across q/k/v/o or gate/up/down, biases included), p = 1 (L1) or 2 (L2).
 *
 * <p>Inside one layer and kind this ranks exactly like Torch-Pruning's {@code GroupMagnitudeImportance} (local
 * norms summed over the coupled layers; "L2" is the squared norm, no root), since every unit of a set has the
 * same number of weights. Dividing by that number makes a KV group, a query head, an MLP channel and a whole layer
 * comparable per parameter, so the scores can be ranked globally ({@link Scores#comparableAcrossLayers()} true).
 * Default head unit: whole KV groups (as LLM-Pruner's llama3.py), see docs/PRUNING.md. With target "hidden" a residual
 * channel is scored the same way over its slice of every coupled tensor ({@link StructureGraph#hiddenChannels}):
 * embedding and LM-head columns, norm entries, q/k/v/gate/up columns, o/down rows and their biases.
 */
public final class MagnitudeCriterion implements Criterion {
    private final int p;

    /** @param p 1 for L1, 2 for L2 */
    public MagnitudeCriterion(int p) {
        if (p != 1 && p != 2) {
            throw new IllegalArgumentException("magnitude norm: found L" + p + ", expected l1 or l2");
        }
        this.p = p;
    }

    /** From the CLI spelling "l1"/"l2". */
    public static MagnitudeCriterion of(String norm) {
        String n = norm == null ? "l2" : norm.trim().toLowerCase();
        return switch (n) {
            case "l1" -> new MagnitudeCriterion(1);
            case "l2" -> new MagnitudeCriterion(2);
            default -> throw new IllegalArgumentException("--norm " + norm + ": expected l1 or l2");
        };
    }

    @Override
    public String name() {
        return "magnitude";
    }

    /** No paper: uniform allocation of whole KV groups (LLM-Pruner's block-wise setting, Torch-Pruning's default). */
    @Override
    public Defaults defaults() {
        return Defaults.weightsOnly("uniform", "no paper; Torch-Pruning / LLM-Pruner magnitude baseline, uniform per layer");
    }

    @Override
    public ObjectNode options() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("norm", "l" + p);
        o.put("reduction", "mean |w|^p over the structure's weights");
        return o;
    }

    @Override
    public Scores score(ScoringContext ctx) {
        ModelConfig c = ctx.config();
        StructureGraph g = ctx.graph();
        int n = c.numLayers();
        double[][] kv = new double[n][];
        double[][] heads = new double[n][];
        double[][] channels = new double[n][];
        double[] layers = new double[n];
        try (NDManager m = NDManager.newBaseManager(ctx.device())) {
            for (int i = 0; i < n; i++) {
                ctx.progress().accept("magnitude: layer " + (i + 1) + "/" + n);
                try (NDManager scope = m.newSubManager()) {
                    kv[i] = score(g.kvGroups(i), ctx, scope);
                    heads[i] = score(g.queryHeads(i), ctx, scope);
                    channels[i] = score(g.mlpChannels(i), ctx, scope);
                    layers[i] = score(g.layer(i), ctx, scope)[0];
                }
            }
        }
        Scores out = new Scores(name(), true, StructureGraph.Kind.KV_GROUP, kv, heads, channels, layers);
        if (ctx.allocation() != null && ctx.allocation().hidden()) {
            // one unit per residual channel: mean |w|^p over its slice of every tensor with a hidden axis
            ctx.progress().accept("magnitude: hidden channels");
            try (NDManager m = NDManager.newBaseManager(ctx.device())) {
                out = out.withHidden(score(g.hiddenChannels(), ctx, m));
            }
        }
        return out;
    }

    /** Mean |w|^p per unit of {@code set}: sums per member reduced over the cross axis, folded by unit width. */
    private double[] score(StructureGraph.StructureSet set, ScoringContext ctx, NDManager scope) {
        double[] sums = new double[set.count()];
        if (set.count() == 0) {
            return sums;
        }
        for (StructureGraph.Member mem : set.members()) {
            NDArray w = ctx.weights().load(mem.tensor(), scope).toDevice(ctx.device(), false);
            NDArray a = p == 1 ? w.abs() : w.square();
            NDArray perIndex;
            if (mem.axis() < 0) {
                perIndex = a.sum().reshape(1);
            } else if (a.getShape().dimension() == 1) {
                perIndex = a;
            } else {
                perIndex = a.sum(new int[] {1 - mem.axis()}); // reduce the cross axis: one value per row/column
            }
            double[] v = perIndex.reshape(set.count(), -1).sum(new int[] {1}).toType(ai.djl.ndarray.types.DataType.FLOAT64, false).toDoubleArray();
            for (int u = 0; u < v.length; u++) {
                sums[u] += v[u];
            }
        }
        double perUnit = set.parametersPerUnit();
        for (int u = 0; u < sums.length; u++) {
            sums[u] /= perUnit;
        }
        return sums;
    }
}
