package dev.lopper.pruning.criteria;

import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import ai.djl.Device;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

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
 */
public record ScoringContext(ModelConfig config, TensorSource weights, StructureGraph graph, Device device,
                             long[][] calibration, PruningPlan.Calibration calibrationInfo, long seed,
                             Consumer<String> progress) {
    /** A context without calibration data (magnitude). */
    public static ScoringContext of(ModelConfig config, TensorSource weights, Device device) {
        return new ScoringContext(config, weights, StructureGraph.of(config), device, null, null, 0, m -> { });
    }
}
