package dev.lopper.pruning.criteria;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.lopper.calibration.CalibrationData;
import dev.lopper.calibration.CalibrationEngine;
import dev.lopper.model.util.Progress;
import dev.lopper.calibration.StatsCollector;
import dev.lopper.model.config.LayerShape;

import java.util.List;

/**
 * Base of the activation-based criteria (Wanda-sp, FLAP, CFSP): runs the layer-streaming
 * {@link CalibrationEngine} over {@link ScoringContext#calibration()} and offers the weight reductions the papers
 * share. Each subclass reduces a layer's statistics to scores in its collector's {@code endLayer}, while that
 * layer's weights are loaded, so scoring never holds more than one layer.
 */
public abstract class CalibratedCriterion implements Criterion {
    private Progress progress;
    private Integer chunkTokens; // bounds activation memory (see CalibrationEngine.Options); null: the context's
    private CalibrationEngine.Result lastRun;

    @Override
    public Need needs() {
        return Need.ACTIVATIONS;
    }

    @Override
    public abstract boolean comparableAcrossLayers();

    @Override
    public abstract Defaults defaults();

    /** Calibration windows the paper's official code uses by default ({@link #defaults()}). */
    public int defaultSamples() {
        return defaults().samples();
    }

    /** Tokens per window the paper's official code uses by default ({@link #defaults()}). */
    public int defaultSeqLen() {
        return defaults().seqLen();
    }

    /** Where per-layer progress goes (default: the context's {@link ScoringContext#listener()}). */
    public CalibratedCriterion withProgress(Progress p) {
        this.progress = p;
        return this;
    }

    /** Tokens per forward chunk (memory only; results do not depend on it). */
    public CalibratedCriterion withChunkTokens(int tokens) {
        this.chunkTokens = tokens;
        return this;
    }

    /** The last calibration pass (tokens, time, largest layer), or null. */
    public CalibrationEngine.Result lastRun() {
        return lastRun;
    }

    /** Streams the calibration data through the model, feeding {@code collectors}. */
    protected CalibrationEngine.Result calibrate(ScoringContext ctx, List<? extends StatsCollector> collectors) {
        if (ctx.calibration() == null || ctx.calibration().length == 0) {
            throw new IllegalArgumentException("--method " + name() + " needs calibration data: pass --calib FILE (text, .jsonl or a directory)");
        }
        Progress p = progress != null ? progress : ctx.listener();
        CalibrationEngine engine = new CalibrationEngine(ctx.config(), ctx.weights(), ctx.device());
        CalibrationEngine.Options options = new CalibrationEngine.Options(chunkTokens != null ? chunkTokens : ctx.chunkTokens(), p);
        if (ctx.resumeDir() != null) {
            options = options.withCheckpoints(ctx.resumeDir(), name());
        }
        lastRun = engine.run(CalibrationData.of(ctx.calibration()), collectors, options);
        return lastRun;
    }

    /** Per input column j of w [out, in]: mean_i |w[i, j]| (computed in fp64). */
    static double[] columnAbsMean(NDArray w) {
        try (NDManager scope = w.getManager().newSubManager()) {
            NDArray w64 = w.toType(DataType.FLOAT64, true);
            w64.attach(scope);
            return w64.abs().mean(new int[] {0}).toDoubleArray();
        }
    }

    /** Per input column j of w [out, in]: sum_i w[i, j]^2 (computed in fp64). */
    static double[] columnSquareSum(NDArray w) {
        try (NDManager scope = w.getManager().newSubManager()) {
            NDArray w64 = w.toType(DataType.FLOAT64, true);
            w64.attach(scope);
            return w64.square().sum(new int[] {0}).toDoubleArray();
        }
    }

    /** Sums consecutive runs of {@code width} values: per-channel -> per-head (or per-group) scores. */
    static double[] sumRuns(double[] v, int width) {
        double[] out = new double[width == 0 ? 0 : v.length / width];
        for (int i = 0; i < out.length; i++) {
            for (int j = 0; j < width; j++) {
                out[i] += v[i * width + j];
            }
        }
        return out;
    }

    /** Means of consecutive runs of {@code width} values. */
    static double[] meanRuns(double[] v, int width) {
        double[] out = sumRuns(v, width);
        for (int i = 0; i < out.length; i++) {
            out[i] /= width;
        }
        return out;
    }

    /** Query-head width in o_proj input channels and KV-group width, for layer shape {@code s}. */
    static int groupWidth(LayerShape s, int headDim) {
        return s.groupSize() * headDim;
    }

    static double[] sqrt(double[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = Math.sqrt(v[i]);
        }
        return out;
    }
}
