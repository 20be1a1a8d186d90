package dev.lopper.pruning.allocation;

import ai.djl.Device;
import dev.lopper.calibration.BlockInfluence;
import dev.lopper.calibration.CalibrationData;
import dev.lopper.calibration.CalibrationEngine;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.util.Progress;

import java.util.List;

/**
 * Adapt-Pruner's layer importance: per decoder layer, the sum over calibration tokens of {@code 1 - cos(x_in,
 * x_out)} of its input and output hidden states, from one forward pass of the layer-streaming
 * {@link CalibrationEngine} ({@link BlockInfluence#cosine()}, the statistic CFSP's block influence also reads). The
 * official {@code estimate_layer_importance} sums, over mini-batches, the mean of {@code -cos} over the batch's
 * tokens; with equal batches that is this sum divided by the batch's token count, minus a constant, and both the
 * constant and the scale vanish in {@link AdaptPrunerAllocation#normalized}.
 *
 * <pre>{@code
 * double[] imp = LayerImportance.measure(md.config(), md.checkpoint(), Device.cpu(), windows, 512, Progress.NONE);
 * }</pre>
 */
public final class LayerImportance {
    /**
     * Calibration windows when the criterion uses none (magnitude): Adapt-Pruner's released scripts'
     * {@code --num_examples 512}.
     */
    public static final int DEFAULT_SAMPLES = 512;
    /** Tokens per window then: the scripts' {@code --taylor_seq_len 64}. */
    public static final int DEFAULT_SEQ_LEN = 64;

    private LayerImportance() {
    }

    /** One forward pass over {@code windows} [samples][seqLen]; returns {@code sum_tokens (1 - cos)} per layer. */
    public static double[] measure(ModelConfig config, TensorSource weights, Device device, long[][] windows, int chunkTokens,
                                   Progress progress) {
        if (windows == null || windows.length == 0) {
            throw new IllegalArgumentException("adapt-pruner's layer importance needs calibration data: give --calib FILE");
        }
        BlockInfluence block = new BlockInfluence(config.numLayers());
        CalibrationEngine.Options options = new CalibrationEngine.Options(chunkTokens > 0 ? chunkTokens : 512,
                progress == null ? Progress.NONE : progress);
        new CalibrationEngine(config, weights, device).run(CalibrationData.of(windows), List.of(block), options);
        return block.cosine();
    }
}
