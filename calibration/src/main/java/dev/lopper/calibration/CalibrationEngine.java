package dev.lopper.calibration;

import dev.lopper.model.util.Progress;
import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.Decoder;
import dev.lopper.model.Finite;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.Masks;
import dev.lopper.model.Rope;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import java.util.ArrayList;
import java.util.List;

/**
 * Streams a calibration batch through a model holding one decoder layer at a time, so models larger than memory
 * can be calibrated. Embeddings for all N windows are computed first; then for each layer its weights are loaded
 * from the (memory-mapped) source, the batch runs through it in chunks of sequences while collectors observe
 * the activations, the outputs are kept as the next layer's input, and the layer is released.
 *
 * <p>Resident at any time: one layer's fp32 weights, the hidden states of all windows twice (this layer's input
 * and output, N x L x hidden fp32 each) and one chunk's activations. Of the embedding matrix only the calibration
 * tokens' rows are read ({@link dev.lopper.model.io.TensorSource#loadRows}); the LM head is never loaded.
 */
public final class CalibrationEngine {
    private final ModelConfig config;
    private final TensorSource source;
    private final Device device;

    /**
     * @param chunkTokens tokens per forward chunk (sequences per chunk = max(1, chunkTokens / seqLen)); bounds the
     *     activation memory, not the results: every intermediate of a chunk lives until the chunk ends, about
     *     (30 x hidden + 5 x intermediate) x 4 bytes per token
     * @param progress where per-layer progress goes
     */
    public record Options(int chunkTokens, Progress progress, java.nio.file.Path checkpointDir, String jobKey) {
        public Options(int chunkTokens, Progress progress) {
            this(chunkTokens, progress, null, "");
        }

        public static Options defaults() {
            return new Options(512, Progress.NONE);
        }

        public Options withProgress(Progress p) {
            return new Options(chunkTokens, p, checkpointDir, jobKey);
        }

        public Options withChunkTokens(int t) {
            return new Options(t, progress, checkpointDir, jobKey);
        }

        /**
         * Checkpoint after every layer into {@code dir} ({@link LayerCheckpoint}), and resume from the latest
         * checkpoint there whose job matches: {@code jobKey} names what the statistics depend on beyond the data,
         * the model config and the collectors (e.g. the criterion's options when it changes the forward pass).
         */
        public Options withCheckpoints(java.nio.file.Path dir, String jobKey) {
            return new Options(chunkTokens, progress, dir, jobKey == null ? "" : jobKey);
        }
    }

    /** What a run did: tokens per layer, wall time, and the largest layer's fp32 weight bytes. */
    public record Result(long tokens, int layers, double seconds, long maxLayerBytes) {
    }

    public CalibrationEngine(ModelConfig config, TensorSource source, Device device) {
        this.config = config;
        this.source = source;
        this.device = device;
    }

    /** Runs all layers over {@code data}, feeding {@code collectors}. */
    public Result run(CalibrationData data, List<? extends StatsCollector> collectors, Options options) {
        int n = data.samples();
        int t = data.seqLen();
        int chunk = Math.max(1, Math.min(n, options.chunkTokens() / t));
        int layers = config.numLayers();
        long start = System.nanoTime();
        long maxLayerBytes = 0;
        boolean io = collectors.stream().anyMatch(StatsCollector::wantsLayerIO);
        boolean resumable = options.checkpointDir() != null && collectors.stream().allMatch(StatsCollector::resumable);
        String key = resumable ? jobKey(data, chunk, collectors, options.jobKey()) : null;
        try (NDManager root = NDManager.newBaseManager(device)) {
            NDList rope = new Rope(config).tables(root, 0, t);
            NDArray mask = Masks.causal(root, t, config.slidingWindow(), null);
            NDManager current = root.newSubManager();
            LayerCheckpoint.Restored restored = resumable ? LayerCheckpoint.latest(options.checkpointDir(), key, current, collectors) : null;
            List<NDArray> hidden;
            int first = 0;
            if (restored != null) {
                first = restored.layer() + 1;
                hidden = restored.hidden();
                options.progress().message(String.format(java.util.Locale.ROOT,
                        "resuming calibration after layer %d/%d (checkpoint in %s)", first, layers, options.checkpointDir()));
                replayFinishedLayers(first, collectors);
            } else {
                hidden = embed(data, chunk, current);
            }
            for (int i = first; i < layers; i++) {
                long layerStart = System.nanoTime();
                NDManager next = root.newSubManager();
                try (NDManager layerManager = root.newSubManager()) {
                    LayerWeights w = LayerWeights.load(source, config, i, layerManager);
                    maxLayerBytes = Math.max(maxLayerBytes, bytes(w));
                    for (StatsCollector c : collectors) {
                        c.beginLayer(w);
                    }
                    CollectorHooks hooks = new CollectorHooks(collectors);
                    List<NDArray> outputs = new ArrayList<>(hidden.size());
                    long done = 0;
                    for (NDArray in : hidden) {
                        try (NDManager scope = root.newSubManager()) {
                            NDArray x = in.duplicate();
                            x.attach(scope); // op results land in the first operand's manager: the scope
                            NDArray out = Decoder.layer(w, x, rope.get(0), rope.get(1), mask, config.rmsNormEps(),
                                    config.headDim(), hooks);
                            Finite.checkLayerOutput(i, out, "calibration window", done / t);
                            if (io) {
                                for (StatsCollector c : collectors) {
                                    if (c.wantsLayerIO()) {
                                        c.layerIO(i, in, out);
                                    }
                                }
                            }
                            out.attach(next);
                            outputs.add(out);
                        }
                        done += in.getShape().get(0) * t;
                        double now = seconds(start);
                        options.progress().update(i, layers, done, (long) n * t, seconds(layerStart), now);
                    }
                    for (StatsCollector c : collectors) {
                        c.endLayer(w);
                    }
                    LayerWeights replacement = null;
                    for (StatsCollector c : collectors) {
                        LayerWeights r = c.forwardWeights(replacement == null ? w : replacement, layerManager);
                        if (r != null) {
                            replacement = r;
                        }
                    }
                    if (replacement != null) {
                        outputs = rerun(replacement, hidden, rope, mask, next, outputs);
                    }
                    current.close(); // this layer's input is no longer needed
                    current = next;
                    hidden = outputs;
                }
                if (resumable && i < layers - 1) {
                    resumable = checkpoint(options.checkpointDir(), key, i, hidden, collectors, options.progress());
                }
                options.progress().layerDone(i, layers, (long) n * t, seconds(layerStart), seconds(start));
            }
            current.close();
        }
        return new Result((long) n * t, layers, seconds(start), maxLayerBytes);
    }

    /**
     * On resume: the collectors' statistics of layers [0, first) are restored; each collector's per-layer results
     * (computed in endLayer from statistics and weights) are rebuilt by running beginLayer/endLayer once more per
     * finished layer, with its weights and no activations.
     */
    private void replayFinishedLayers(int first, List<? extends StatsCollector> collectors) {
        for (int i = 0; i < first; i++) {
            try (NDManager layerManager = NDManager.newBaseManager(device)) {
                LayerWeights w = LayerWeights.load(source, config, i, layerManager);
                for (StatsCollector c : collectors) {
                    c.beginLayer(w);
                }
                for (StatsCollector c : collectors) {
                    c.endLayer(w);
                }
            }
        }
    }

    /**
     * Writes the checkpoint after {@code layer}; false (with a warning) when it cannot be written, e.g. for lack of
     * disk space (a checkpoint holds N x T x hidden fp32 hidden states): resuming is a convenience, never a reason
     * to fail the job.
     */
    private static boolean checkpoint(java.nio.file.Path dir, String key, int layer, List<NDArray> hidden,
                                      List<? extends StatsCollector> collectors, Progress progress) {
        try {
            LayerCheckpoint.write(dir, key, layer, hidden, collectors);
            return true;
        } catch (java.io.IOException | RuntimeException e) {
            progress.message("warning: calibration checkpoint in " + dir + " failed (" + e.getMessage()
                    + "); continuing without resume points");
            return false;
        }
    }

    /** What a checkpoint's statistics depend on: the windows, the model's shapes, the collectors, the caller's key. */
    private String jobKey(CalibrationData data, int chunk, List<? extends StatsCollector> collectors, String callerKey) {
        java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(8);
        for (long[] w : data.windows()) {
            for (long id : w) {
                crc.update(b.clear().putLong(id).flip());
            }
        }
        StringBuilder names = new StringBuilder();
        for (StatsCollector c : collectors) {
            names.append(c.getClass().getName()).append(c.taps()).append(';');
        }
        return callerKey + "|windows " + data.samples() + "x" + data.seqLen() + " crc " + Long.toHexString(crc.getValue())
                + "|chunk " + chunk + "|" + names + "|" + config.toJson().toString();
    }

    /** Embeddings of every window, in chunks [chunk, T, hidden] owned by {@code into}. */
    private List<NDArray> embed(CalibrationData data, int chunk, NDManager into) {
        List<NDArray> out = new ArrayList<>();
        try (NDManager scope = into.getParentManager().newSubManager()) {
            int t = data.seqLen();
            long[][] w = data.windows();
            for (int s = 0; s < w.length; s += chunk) {
                int b = Math.min(chunk, w.length - s);
                long[] ids = new long[b * t];
                for (int i = 0; i < b; i++) {
                    for (int j = 0; j < t; j++) {
                        long id = w[s + i][j];
                        if (id < 0 || id >= config.vocabSize()) {
                            throw new IllegalArgumentException("calibration token id " + id + " is outside the vocabulary (0.."
                                    + (config.vocabSize() - 1) + "): was the data tokenized with this model's tokenizer?");
                        }
                        ids[i * t + j] = id;
                    }
                }
                // only the rows of these tokens, read from the stored (BF16) matrix: never the [vocab, hidden] whole
                NDArray rows = source.loadRows(WeightNames.EMBED, ids, scope, DataType.FLOAT32).reshape(b, t, config.hiddenSize());
                rows.attach(into);
                out.add(rows);
            }
        }
        return out;
    }

    private List<NDArray> rerun(LayerWeights w, List<NDArray> inputs, NDList rope, NDArray mask, NDManager next,
                                List<NDArray> dense) {
        for (NDArray d : dense) {
            d.close();
        }
        List<NDArray> outputs = new ArrayList<>(inputs.size());
        for (NDArray in : inputs) {
            try (NDManager scope = next.getParentManager().newSubManager()) {
                NDArray x = in.duplicate();
                x.attach(scope);
                NDArray out = Decoder.layer(w, x, rope.get(0), rope.get(1), mask, config.rmsNormEps(), config.headDim(),
                        LayerHooks.NONE);
                out.attach(next);
                outputs.add(out);
            }
        }
        return outputs;
    }

    private static long bytes(LayerWeights w) {
        long total = 0;
        for (NDArray a : new NDArray[] {w.inputNorm(), w.q(), w.qBias(), w.k(), w.kBias(), w.v(), w.vBias(), w.o(),
                w.oBias(), w.postNorm(), w.gate(), w.up(), w.down(), w.downBias()}) {
            if (a != null) {
                total += a.size() * 4;
            }
        }
        return total;
    }

    private static double seconds(long since) {
        return (System.nanoTime() - since) / 1e9;
    }

    /** Shape of the hidden states the engine keeps, for memory estimates: [N, T, hidden] fp32 bytes. */
    public static long hiddenStateBytes(ModelConfig config, CalibrationData data) {
        return new Shape(data.samples(), data.seqLen(), config.hiddenSize()).size() * 4;
    }
}
