package dev.lopper.pruning.criteria;

import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import ai.djl.Device;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import dev.lopper.model.util.Progress;
import dev.lopper.pruning.allocation.Allocation;

import dev.lopper.calibration.StatsCollector;
import dev.lopper.calibration.gradient.GradientConsumer;
import dev.lopper.calibration.gradient.GradientEngine;
import dev.lopper.calibration.gradient.SampleTerm;

import java.util.List;
import java.util.function.Consumer;

/**
 * Everything a {@link Criterion} may read. Weights are loaded on demand (a checkpoint is memory-mapped), so a
 * criterion should load one layer at a time ({@link dev.lopper.model.LayerWeights#load}).
 *
 * @param config the model's config
 * @param weights the model's tensors
 * @param graph the model's structures (what each score refers to)
 * @param device where to compute
 * @param calibration token ids [samples][seqLen] for calibration-based criteria, or null
 * @param calibrationInfo where the calibration tokens came from (provenance), or null
 * @param seed random seed, for criteria that sample
 * @param progress one-line progress messages (e.g. "layer 3/32"); never null
 * @param listener structured progress (calibration layers), never null
 * @param allocation the allocation the scores are for, or null when unknown; a criterion that prunes while it
 *                   scores (Wanda-sp's sequential order) reads it
 * @param chunkTokens calibration tokens per forward chunk (memory only; results do not depend on it)
 * @param resumeDir where this job's calibration checkpoints go (one per finished layer, the latest kept), so that
 *                  the same job run again after a kill resumes; null: no checkpoints
 */
public record ScoringContext(ModelConfig config, TensorSource weights, StructureGraph graph, Device device,
                             long[][] calibration, PruningPlan.Calibration calibrationInfo, long seed,
                             Consumer<String> progress, Progress listener, Allocation.Options allocation,
                             int chunkTokens, java.nio.file.Path resumeDir) {
    public ScoringContext {
        progress = progress == null ? m -> { } : progress;
        chunkTokens = chunkTokens > 0 ? chunkTokens : 512;
        if (listener == null) {
            Consumer<String> sink = progress;
            listener = Progress.lines(sink);
        }
    }

    /** A context whose calibration progress goes to {@code progress} as lines, allocation unknown. */
    public ScoringContext(ModelConfig config, TensorSource weights, StructureGraph graph, Device device, long[][] calibration,
                          PruningPlan.Calibration calibrationInfo, long seed, Consumer<String> progress) {
        this(config, weights, graph, device, calibration, calibrationInfo, seed, progress, null, null, 512, null);
    }

    /**
     * Runs the layer-streamed backward pass ({@link GradientEngine}) of the causal-LM loss over
     * {@link #calibration()}, handing each layer (last to first) to {@code consumer}; what a
     * {@link Criterion.Need#GRADIENTS} criterion calls instead of driving the engine itself.
     *
     * @param perSample one window per backward, so squared per-sample gradients are collected
     * @param collectors activation statistics gathered in the same dense forward sweep (e.g. GBLM's Wanda term)
     */
    public GradientEngine.Result gradients(GradientConsumer consumer, boolean perSample, List<? extends StatsCollector> collectors) {
        return gradients(consumer, perSample, true, collectors);
    }

    /** {@link #gradients(GradientConsumer, boolean, List)}; {@code sums} false: only the per-sample squares are kept. */
    public GradientEngine.Result gradients(GradientConsumer consumer, boolean perSample, boolean sums,
                                           List<? extends StatsCollector> collectors) {
        return gradients(consumer, GradientEngine.Options.defaults().withPerSample(perSample).withSums(sums), collectors);
    }

    /** {@link #gradients(GradientConsumer, boolean, List)} summing one per-sample {@link SampleTerm} only. */
    public GradientEngine.Result gradients(GradientConsumer consumer, SampleTerm term, List<? extends StatsCollector> collectors) {
        return gradients(consumer, GradientEngine.Options.defaults().withSampleTerm(term), collectors);
    }

    private GradientEngine.Result gradients(GradientConsumer consumer, GradientEngine.Options statistics,
                                            List<? extends StatsCollector> collectors) {
        if (calibration == null || calibration.length == 0) {
            throw new IllegalArgumentException("gradients need calibration data: pass --calib FILE (text, .jsonl or a directory)");
        }
        GradientEngine.Options o = statistics.withChunkTokens(chunkTokens).withCollectors(collectors).withProgress(listener);
        // the backward recomputes each layer from its stored input: (layers + 1) boundaries of N x T x hidden fp32,
        // 0.5 GB at an 8B shape with 8 x 128 tokens and 141 GB with GBLM's 128 x 2048; past SPILL_ABOVE_BYTES they go
        // to files (one per boundary, deleted as used) instead of memory
        long boundaries = (long) (config.numLayers() + 1) * calibration.length * calibration[0].length * config.hiddenSize() * 4;
        java.nio.file.Path spill = null;
        try {
            if (boundaries > SPILL_ABOVE_BYTES) {
                java.nio.file.Path base = java.nio.file.Path.of(System.getProperty("lopper.tmpdir", System.getProperty("java.io.tmpdir")));
                spill = java.nio.file.Files.createTempDirectory(base, "lopper-boundaries-");
                listener.message(String.format(java.util.Locale.ROOT, "layer-boundary hidden states (%.0f MiB) spill to %s",
                        boundaries / 1048576.0, spill));
                o = o.withSpillDir(spill);
            }
            return new GradientEngine(config, weights, device).run(calibration, consumer, o);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException("cannot create a directory for spilled hidden states (set -Dlopper.tmpdir)", e);
        } finally {
            if (spill != null) {
                try {
                    java.nio.file.Files.deleteIfExists(spill);
                } catch (java.io.IOException ignored) {
                    // only an empty directory can be left behind: its files are deleted as they are used
                }
            }
        }
    }

    /** Boundary hidden states above this many bytes are spilled to disk by {@link #gradients}. */
    public static final long SPILL_ABOVE_BYTES = 256L << 20;

    /** A context without calibration data (magnitude). */
    public static ScoringContext of(ModelConfig config, TensorSource weights, Device device) {
        return new ScoringContext(config, weights, StructureGraph.of(config), device, null, null, 0, m -> { });
    }
}
