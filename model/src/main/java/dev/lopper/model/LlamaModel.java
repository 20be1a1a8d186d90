package dev.lopper.model;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import java.util.ArrayList;
import java.util.List;

/**
 * A LLaMA-family causal LM with all weights loaded (fp32) on one device. Read it top to bottom:
 * {@link #embed} -> {@link #layer} x N -> {@link #head}; {@link #logits} runs all three.
 *
 * <p>For models that do not fit in memory, the calibration engine does not use this class: it loads one
 * {@link LayerWeights} at a time and calls {@link Decoder#layer} itself.
 */
public final class LlamaModel implements AutoCloseable {
    private final ModelConfig config;
    private final NDManager manager;
    private final NDArray embedTokens; // [vocab, hidden]
    private final NDArray finalNorm; // [hidden]
    private final NDArray lmHead; // [vocab, hidden]; the embedding itself when tied
    private final List<LayerWeights> layers;
    private final Rope rope;

    private LlamaModel(ModelConfig config, NDManager manager, NDArray embedTokens, NDArray finalNorm, NDArray lmHead,
                       List<LayerWeights> layers) {
        this.config = config;
        this.manager = manager;
        this.embedTokens = embedTokens;
        this.finalNorm = finalNorm;
        this.lmHead = lmHead;
        this.layers = layers;
        this.rope = new Rope(config);
    }

    /** Loads every weight from {@code source} onto {@code device}, checking shapes against {@code config}. */
    public static LlamaModel load(ModelConfig config, TensorSource source, Device device) {
        NDManager manager = NDManager.newBaseManager(device);
        try {
            LayerWeights.Loader l = new LayerWeights.Loader(source, manager);
            NDArray embed = l.get(WeightNames.EMBED, config.vocabSize(), config.hiddenSize());
            NDArray norm = l.get(WeightNames.FINAL_NORM, config.hiddenSize());
            NDArray head = WeightNames.head(config, source).equals(WeightNames.EMBED)
                    ? embed : l.get(WeightNames.LM_HEAD, config.vocabSize(), config.hiddenSize());
            List<LayerWeights> layers = new ArrayList<>();
            for (int i = 0; i < config.numLayers(); i++) {
                layers.add(LayerWeights.load(source, config, i, manager));
            }
            return new LlamaModel(config, manager, embed, norm, head, layers);
        } catch (RuntimeException e) {
            manager.close();
            throw e;
        }
    }

    public ModelConfig config() {
        return config;
    }

    public Device device() {
        return manager.getDevice();
    }

    public LayerWeights layerWeights(int i) {
        return layers.get(i);
    }

    /** token ids [B, T] (int64) -> embeddings [B, T, hidden] in {@code scope}. */
    public NDArray embed(NDManager scope, NDArray ids) {
        Shape s = ids.getShape();
        NDArray flat = ids.reshape(-1);
        NDArray rows = embedTokens.get(scope, new NDIndex("{}", flat));
        return rows.reshape(s.get(0), s.get(1), config.hiddenSize());
    }

    /**
     * Runs decoder layer {@code i} on hidden states [B, T, hidden].
     *
     * @param ropeTables cos and sin from {@link #ropeTables}
     * @param mask additive mask from {@link #mask}
     */
    public NDArray layer(int i, NDArray hidden, NDList ropeTables, NDArray mask, LayerHooks hooks) {
        return Decoder.layer(layers.get(i), hidden, ropeTables.get(0), ropeTables.get(1), mask, config.rmsNormEps(),
                config.headDim(), hooks);
    }

    /** Final RMSNorm and LM head: hidden [B, T, hidden] -> logits [B, T, vocab]. */
    public NDArray head(NDArray hidden) {
        return Decoder.linear(Decoder.rmsNorm(hidden, finalNorm, config.rmsNormEps()), lmHead, null);
    }

    /** RoPE tables for positions 0..t-1 in {@code scope}. */
    public NDList ropeTables(NDManager scope, int t) {
        return rope.tables(scope, 0, t);
    }

    /** The additive causal mask (Mistral: also the sliding window), [T, T] or [B, 1, T, T] with padding. */
    public NDArray mask(NDManager scope, int t, NDArray paddingMask) {
        return Masks.causal(scope, t, config.slidingWindow(), paddingMask);
    }

    /** Logits [B, T, vocab] (fp32) for token ids [B, T], returned in the manager of {@code ids}. */
    public NDArray logits(NDArray ids) {
        return logits(ids, null, LayerHooks.NONE);
    }

    /** Logits with an optional padding mask [B, T] (1 = token, 0 = padding) and activation hooks. */
    public NDArray logits(NDArray ids, NDArray paddingMask, LayerHooks hooks) {
        try (NDManager scope = manager.newSubManager()) {
            NDArray local = ids.toDevice(device(), true);
            local.attach(scope);
            int t = (int) ids.getShape().get(1);
            NDList rope = ropeTables(scope, t);
            NDArray pad = paddingMask == null ? null : paddingMask.toDevice(device(), true);
            if (pad != null) {
                pad.attach(scope);
            }
            NDArray mask = mask(scope, t, pad);
            NDArray h = embed(scope, local);
            for (int i = 0; i < layers.size(); i++) {
                h = layer(i, h, rope, mask, hooks);
            }
            NDArray out = head(h).toDevice(ids.getDevice(), false);
            out.attach(ids.getManager());
            return out;
        }
    }

    /** An empty KV cache for incremental decoding with {@link #logits(NDArray, KvCache)}. */
    public KvCache newCache() {
        return new KvCache(manager, layers.size());
    }

    /**
     * Logits [B, T, vocab] of new tokens [B, T] that continue the sequence whose keys/values {@code cache}
     * holds (positions cache.length() onwards); appends their keys/values to the cache.
     */
    public NDArray logits(NDArray ids, KvCache cache) {
        try (NDManager scope = manager.newSubManager()) {
            NDArray local = ids.toDevice(device(), true);
            local.attach(scope);
            int t = (int) ids.getShape().get(1);
            int start = cache.length();
            NDList rope = this.rope.tables(scope, start, t);
            // one new token without a sliding window sees every key: no mask to build and add each step
            NDArray mask = t == 1 && config.slidingWindow() <= 0 ? null : Masks.window(scope, start, t, config.slidingWindow());
            NDArray h = embed(scope, local);
            for (int i = 0; i < layers.size(); i++) {
                h = Decoder.layer(layers.get(i), h, rope.get(0), rope.get(1), mask, config.rmsNormEps(), config.headDim(),
                        LayerHooks.NONE, cache);
            }
            cache.advance(t);
            NDArray out = head(h).toDevice(ids.getDevice(), false);
            out.attach(ids.getManager());
            return out;
        }
    }

    /** Logits [T][vocab] of one sequence. */
    public float[][] logits(long[] ids) {
        try (NDManager m = NDManager.newBaseManager(device())) {
            NDArray out = logits(m.create(ids, new Shape(1, ids.length)));
            float[] flat = out.toType(DataType.FLOAT32, false).toFloatArray();
            int v = config.vocabSize();
            float[][] rows = new float[ids.length][v];
            for (int t = 0; t < ids.length; t++) {
                System.arraycopy(flat, t * v, rows[t], 0, v);
            }
            return rows;
        }
    }

    /** Arrays owned by this model's manager (its weights); tests use it to prove forward passes leak nothing. */
    int managedArrays() {
        return ((ai.djl.ndarray.BaseNDManager) manager).getManagedArrays().size();
    }

    /** Parameters held (the LM head counted only when untied). */
    public long parameterCount() {
        return ModelStats.parameters(config);
    }

    @Override
    public void close() {
        manager.close();
    }
}
