package dev.lopper.calibration.gradient;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import dev.lopper.calibration.CollectorHooks;
import dev.lopper.model.util.Progress;
import dev.lopper.calibration.StatsCollector;
import dev.lopper.model.Decoder;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.Masks;
import dev.lopper.model.Rope;
import dev.lopper.model.Scalars;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The backward pass of the causal-LM loss on calibration windows, one decoder layer at a time, so that a model
 * larger than memory gets the same gradients as a whole-model backward.
 *
 * <ol>
 *   <li>Forward sweep without gradients: embeddings, then every layer (weights loaded from the mmapped source and
 *   released), keeping each layer's <em>input</em> hidden states ({@link HiddenStore}: memory or a spill directory).
 *   Activation collectors ({@link Options#collectors}) observe this dense pass, as in the calibration engine.</li>
 *   <li>Loss: final RMSNorm + LM head on the last hidden states; window {@code n}'s loss {@code L_n} is HF's
 *   causal-LM loss of that window alone, the mean cross-entropy over its {@code T - 1} shifted targets. The
 *   backward runs on {@code sum_n L_n}, so the gradient reaching window n's hidden states is exactly
 *   {@code dL_n/dh_n} (windows do not interact).</li>
 *   <li>Layers in reverse: each is loaded again, recomputed from its stored input with gradients on (DJL autograd,
 *   PyTorch engine), and back-propagated with the upstream gradient, giving its weights' gradients and the
 *   gradient for the layer below. Per chunk the weights' fp32 gradients are added (in fp32, as the official codes do) to
 *   {@link LayerGradients}; the consumer then gets the layer, and weights and statistics are released.</li>
 * </ol>
 *
 * <p>With {@link Options#perSample} each backward chunk is one window, so {@code g_n^2} is that window's own
 * squared gradient (LLM-Pruner's {@code acc_grad}, GBLM's l2 norm); otherwise chunks of windows are summed.
 *
 * <pre>{@code
 * GradientEngine engine = new GradientEngine(config, checkpoint, Device.cpu());
 * engine.run(data.windows(), (weights, grads) -> {
 *     NDArray fisher = grads.meanSquaredGradient(LayerParam.DOWN);   // fp32 [hidden, intermediate]
 *     ...reduce to per-channel scores and keep them...
 * }, GradientEngine.Options.defaults().withPerSample(true));
 * }</pre>
 */
public final class GradientEngine {
    private final ModelConfig config;
    private final TensorSource source;
    private final Device device;

    /**
     * @param chunkTokens tokens per forward chunk (windows per chunk = max(1, chunkTokens / T)); bounds activation
     *     memory, not results
     * @param perSample one window per backward chunk, so squared per-sample gradients are collected
     * @param spillDir where the layer-boundary hidden states go (deleted as used), or null to keep them in memory
     * @param collectors activation statistics gathered during the dense forward sweep (e.g. GBLM's Wanda term)
     * @param progress 2 x layers steps: the forward sweep (layers 0..L-1), then the backward (L-1..0)
     */
    public record Options(int chunkTokens, boolean perSample, Path spillDir, List<? extends StatsCollector> collectors,
                          Progress progress, long headBlockBytes, boolean sums, SampleTerm term) {
        public static Options defaults() {
            return new Options(512, false, null, List.of(), Progress.NONE, HEAD_BLOCK_BYTES, true, null);
        }

        /**
         * One window per backward, and only {@code sum_n term(W, g_n)} kept ({@link LayerGradients#termSum}): neither
         * the sums nor the squares of the gradients.
         */
        public Options withSampleTerm(SampleTerm t) {
            return new Options(chunkTokens, true, spillDir, collectors, progress, headBlockBytes, false, t);
        }

        /**
         * Whether {@code sum_n g_n} is kept (default); a consumer that reads only the per-sample squares (GBLM) turns
         * it off and saves one fp32 copy of the layer.
         */
        public Options withSums(boolean keep) {
            return new Options(chunkTokens, perSample, spillDir, collectors, progress, headBlockBytes, keep, term);
        }

        /** fp32 bytes of LM-head rows widened at a time in the loss (at least one row). */
        public Options withHeadBlockBytes(long bytes) {
            return new Options(chunkTokens, perSample, spillDir, collectors, progress, bytes, sums, term);
        }

        public Options withChunkTokens(int t) {
            return new Options(t, perSample, spillDir, collectors, progress, headBlockBytes, sums, term);
        }

        public Options withPerSample(boolean p) {
            return new Options(chunkTokens, p, spillDir, collectors, progress, headBlockBytes, sums, term);
        }

        public Options withSpillDir(Path d) {
            return new Options(chunkTokens, perSample, d, collectors, progress, headBlockBytes, sums, term);
        }

        public Options withCollectors(List<? extends StatsCollector> c) {
            return new Options(chunkTokens, perSample, spillDir, c, progress, headBlockBytes, sums, term);
        }

        public Options withProgress(Progress p) {
            return new Options(chunkTokens, perSample, spillDir, collectors, p, headBlockBytes, sums, term);
        }
    }

    /**
     * What a run did.
     *
     * @param meanLoss {@code (1/N) sum_n L_n}, the mean causal-LM loss over windows (= HF's batch loss)
     * @param maxLayerBytes the largest layer's fp32 weight bytes
     */
    public record Result(int samples, long tokens, int layers, double meanLoss, double seconds, long maxLayerBytes) {
    }

    public GradientEngine(ModelConfig config, TensorSource source, Device device) {
        this.config = config;
        this.source = source;
        this.device = device;
    }

    /**
     * Fails, naming the family, when this backward pass cannot compute a model's gradients: Qwen3's per-head q/k
     * norms are not carried into the recomputed layer ({@link LayerParam} has no q/k-norm leaves), so its
     * gradients would be those of a different function. Called by {@link #run} and, before any work, by
     * gradient criteria.
     */
    public static void checkSupported(ModelConfig config) {
        if (config.family().hasQkNorm()) {
            throw new IllegalArgumentException("gradients are not supported for the " + config.family().name().toLowerCase(java.util.Locale.ROOT)
                    + " family (its per-head q_norm/k_norm are not part of the layer-streamed backward pass); "
                    + "gradient criteria (llm-pruner, gblm) run on llama, mistral, qwen2 and phi3 models");
        }
    }

    /** Runs forward and backward over {@code windows} [N][T] (T >= 2), handing each layer to {@code consumer}. */
    public Result run(long[][] windows, GradientConsumer consumer, Options options) {
        checkSupported(config);
        int n = windows.length;
        int t = windows[0].length;
        if (t < 2) {
            throw new IllegalArgumentException("the causal-LM loss needs windows of at least 2 tokens, got " + t);
        }
        int per = Math.max(1, Math.min(n, options.chunkTokens() / t));
        List<int[]> chunks = new ArrayList<>(); // {first window, windows}
        for (int s = 0; s < n; s += per) {
            chunks.add(new int[] {s, Math.min(per, n - s)});
        }
        int layers = config.numLayers();
        long start = System.nanoTime();
        long tokens = (long) n * t;
        long maxLayerBytes = 0;
        double lossSum;
        long chunkBytes = (long) per * t * config.hiddenSize() * 4;
        try (NDManager root = NDManager.newBaseManager(device);
             HiddenStore store = new HiddenStore(root, options.spillDir(), chunkBytes)) {
            NDList rope = new Rope(config).tables(root, 0, t);
            NDArray mask = Masks.causal(root, t, config.slidingWindow(), null);
            Sweep sweep = new Sweep(root, rope, mask, store, chunks, t);
            embed(windows, sweep);
            LayerHooks hooks = new CollectorHooks(options.collectors());
            for (int i = 0; i < layers; i++) {
                long layerStart = System.nanoTime();
                maxLayerBytes = Math.max(maxLayerBytes, forwardLayer(i, sweep, hooks, options.collectors()));
                options.progress().layerDone(i, 2 * layers, tokens, seconds(layerStart), seconds(start));
            }
            NDManager deltas = root.newSubManager();
            List<NDArray> delta = new ArrayList<>();
            lossSum = head(windows, sweep, deltas, delta, options.headBlockBytes());
            store.drop(layers);
            for (int i = layers - 1; i >= 0; i--) {
                long layerStart = System.nanoTime();
                NDManager next = root.newSubManager();
                delta = backwardLayer(i, sweep, delta, next, consumer, options);
                deltas.close(); // the gradient above layer i is spent
                deltas = next;
                store.drop(i);
                options.progress().layerDone(2 * layers - 1 - i, 2 * layers, tokens, seconds(layerStart), seconds(start));
            }
            deltas.close();
        }
        return new Result(n, tokens, layers, lossSum / n, seconds(start), maxLayerBytes);
    }

    /** What the passes share: the root manager, rope tables, mask, boundary store and chunking. */
    private record Sweep(NDManager root, NDList rope, NDArray mask, HiddenStore store, List<int[]> chunks, int t) {
        Shape shape(int chunk, int hidden) {
            return new Shape(chunks.get(chunk)[1], t, hidden);
        }
    }

    /** Boundary 0: the embeddings of every chunk, gathered row by row from the stored embedding matrix. */
    private void embed(long[][] windows, Sweep s) {
        try (NDManager scope = s.root().newSubManager()) {
            for (int c = 0; c < s.chunks().size(); c++) {
                long[] ids = ids(windows, s.chunks().get(c), 0, s.t());
                // only these tokens' rows, read from the stored matrix (never the [vocab, hidden] whole in fp32)
                NDArray rows = source.loadRows(WeightNames.EMBED, ids, scope, DataType.FLOAT32).reshape(s.shape(c, config.hiddenSize()));
                rows.attach(s.root()); // the store takes it over
                s.store().put(0, c, rows);
            }
        }
    }

    /** Token ids of a chunk's windows, positions [from, from + len), flattened; checked against the vocabulary. */
    private long[] ids(long[][] windows, int[] chunk, int from, int len) {
        long[] ids = new long[chunk[1] * len];
        for (int i = 0; i < chunk[1]; i++) {
            for (int j = 0; j < len; j++) {
                long id = windows[chunk[0] + i][from + j];
                if (id < 0 || id >= config.vocabSize()) {
                    throw new IllegalArgumentException("calibration token id " + id + " is outside the vocabulary (0.."
                            + (config.vocabSize() - 1) + "): was the data tokenized with this model's tokenizer?");
                }
                ids[i * len + j] = id;
            }
        }
        return ids;
    }

    /** Runs layer i on every chunk without gradients, storing its outputs as boundary i + 1; returns its bytes. */
    private long forwardLayer(int i, Sweep s, LayerHooks hooks, List<? extends StatsCollector> collectors) {
        try (NDManager layer = s.root().newSubManager()) {
            LayerWeights w = LayerWeights.load(source, config, i, layer);
            collectors.forEach(c -> c.beginLayer(w));
            for (int c = 0; c < s.chunks().size(); c++) {
                try (NDManager scope = s.root().newSubManager()) {
                    NDArray x = s.store().get(i, c, s.shape(c, config.hiddenSize()), scope);
                    NDArray out = layer(w, x, s, hooks);
                    out.attach(s.root());
                    s.store().put(i + 1, c, out);
                }
            }
            collectors.forEach(c -> c.endLayer(w));
            return bytes(w);
        }
    }

    private NDArray layer(LayerWeights w, NDArray x, Sweep s, LayerHooks hooks) {
        return Decoder.layer(w, x, s.rope().get(0), s.rope().get(1), s.mask(), config.rmsNormEps(), config.headDim(), hooks);
    }

    /** LM-head rows widened to fp32 at a time in the loss (64 MiB at hidden 4096: the head is never whole in fp32). */
    static final long HEAD_BLOCK_BYTES = 64L << 20;

    /**
     * The loss on the last boundary: per chunk, d(sum_n L_n)/dh into {@code delta} (owned by {@code into});
     * returns sum_n L_n. Only h requires gradients: the LM head and final norm are not pruned.
     *
     * <p>The cross-entropy's gradient is formed by hand, so that the LM head ([vocab, hidden], 2 GiB in fp32 at
     * LLaMA-3's 128,256 x 4,096) is read in blocks of rows and never held whole: {@code logits = x W^T} block by
     * block, {@code p = softmax(logits)}, {@code dL/dx = (p W - W[target]) / (T - 1)} per predicted position (the
     * softmax-minus-one-hot gradient of log_softmax + NLL, the same that autograd forms), then autograd only through
     * the final RMSNorm. The last position of each window predicts nothing and gets no gradient.
     */
    private double head(long[][] windows, Sweep s, NDManager into, List<NDArray> delta, long blockBytes) {
        double total = 0;
        int t = s.t();
        int hidden = config.hiddenSize();
        String name = WeightNames.head(config, source);
        long vocab = config.vocabSize();
        int block = (int) Math.max(1, Math.min(vocab, blockBytes / (4L * hidden)));
        try (NDManager weights = s.root().newSubManager()) {
            NDArray norm = source.load(WeightNames.FINAL_NORM, weights);
            // a source without stored bytes (a model in memory) has the matrix whole already: slice views of it
            NDArray whole = source.stored(name) == null ? source.load(name, weights) : null;
            for (int c = 0; c < s.chunks().size(); c++) {
                try (NDManager scope = s.root().newSubManager()) {
                    int b = s.chunks().get(c)[1];
                    long rows = (long) b * (t - 1);
                    NDArray h = s.store().get(config.numLayers(), c, s.shape(c, hidden), scope);
                    long[] targets = ids(windows, s.chunks().get(c), 1, t - 1);
                    h.setRequiresGradient(true);
                    try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                        NDArray normed = Decoder.rmsNorm(h, norm, config.rmsNormEps());
                        NDArray dx;
                        try (NDManager loss = scope.newSubManager()) {
                            // the positions that predict a token: [b * (t - 1), hidden], detached from the graph
                            NDArray x = normed.stopGradient().get(new NDIndex(":, :{}, :", t - 1)).reshape(rows, hidden);
                            x.attach(loss);
                            NDArray logits = logits(x, name, whole, vocab, block, loss); // [rows, vocab]
                            NDArray logp = logits.logSoftmax(-1);
                            logp.attach(loss);
                            logits.close();
                            NDArray picked = logp.gather(loss.create(targets, new Shape(rows, 1)), 1);
                            total -= picked.toType(DataType.FLOAT64, false).sum().getDouble() / (t - 1);
                            NDArray p = logp.exp(); // softmax
                            logp.close();
                            // p - onehot(target) before the product with W, as autograd forms it: subtracting W[target]
                            // after the product would cancel catastrophically where p[target] is near 1
                            try (NDArray onehot = loss.create(targets).oneHot((int) vocab, DataType.FLOAT32)) {
                                p.subi(onehot);
                            }
                            NDArray d = throughHead(p, name, whole, vocab, block, loss).divi(t - 1);
                            // the last position of each window: zero gradient
                            dx = NDArrays.concat(new NDList(d.reshape(b, t - 1, hidden), loss.zeros(new Shape(b, 1, hidden))), 1);
                            dx.attach(scope);
                        }
                        gc.backward(normed.mul(dx).sum());
                    }
                    delta.add(keep(h.getGradient(), into));
                }
            }
        }
        return total;
    }

    /** {@code x W^T} over the LM head's row blocks: [rows, vocab] logits, in {@code scope}. */
    private NDArray logits(NDArray x, String name, NDArray whole, long vocab, int block, NDManager scope) {
        List<NDArray> parts = new ArrayList<>();
        for (long v0 = 0; v0 < vocab; v0 += block) {
            long v1 = Math.min(vocab, v0 + block);
            try (NDManager blockScope = scope.newSubManager()) {
                NDArray part = Decoder.linear(x, headRows(name, whole, v0, v1, blockScope), null); // [rows, v1 - v0]
                part.attach(scope);
                parts.add(part);
            }
        }
        if (parts.size() == 1) {
            return parts.get(0);
        }
        NDArray logits = NDArrays.concat(new NDList(parts), 1);
        logits.attach(scope);
        parts.forEach(NDArray::close);
        return logits;
    }

    /** {@code d W} over the LM head's row blocks for {@code d} [rows, vocab]: [rows, hidden], in {@code scope}. */
    private NDArray throughHead(NDArray d, String name, NDArray whole, long vocab, int block, NDManager scope) {
        NDArray acc = null;
        for (long v0 = 0; v0 < vocab; v0 += block) {
            long v1 = Math.min(vocab, v0 + block);
            try (NDManager blockScope = scope.newSubManager()) {
                NDArray part = d.get(new NDIndex(":, {}:{}", v0, v1)).matMul(headRows(name, whole, v0, v1, blockScope));
                if (acc == null) {
                    acc = part;
                    acc.attach(scope);
                } else {
                    acc.addi(part);
                    part.close();
                }
            }
        }
        return acc;
    }

    /** Rows [v0, v1) of the LM head as fp32 in {@code scope}: widened from the stored matrix, or a view of {@code whole}. */
    private NDArray headRows(String name, NDArray whole, long v0, long v1, NDManager scope) {
        NDArray w = whole != null ? whole.get(new NDIndex("{}:{}", v0, v1)) : source.loadRows(name, range(v0, v1), scope, DataType.FLOAT32);
        w.attach(scope);
        return w;
    }

    private static long[] range(long from, long to) {
        long[] r = new long[(int) (to - from)];
        for (int i = 0; i < r.length; i++) {
            r[i] = from + i;
        }
        return r;
    }

    /**
     * HF's causal-LM loss per window: logits [B, T, V] predict targets [B, T-1, 1] (the ids shifted by one);
     * returns [B], each the mean over the window's T - 1 targets of -log softmax(logits)[target].
     */
    static NDArray windowLosses(NDArray logits, NDArray targets) {
        long t1 = targets.getShape().get(1);
        NDArray logp = logits.get(new NDIndex(":, :{}, :", t1)).logSoftmax(-1);
        // an owned constant: DivBackward keeps the divisor, and div(Number) would hand it a closed from_blob (Scalars)
        return logp.gather(targets, 2).sum(new int[] {1, 2}).neg().div(Scalars.of(logp.getManager(), t1));
    }

    /**
     * Layer i backward: per piece of windows (one window with perSample), recompute from the stored input with
     * gradients on, back-propagate the upstream gradient, add the weights' gradients; then hand the layer to the
     * consumer. Returns the gradient at layer i's input per chunk, owned by {@code into}.
     */
    private List<NDArray> backwardLayer(int i, Sweep s, List<NDArray> upstream, NDManager into, GradientConsumer consumer,
                                        Options options) {
        boolean perSample = options.perSample();
        List<NDArray> below = new ArrayList<>();
        try (NDManager layer = s.root().newSubManager();
             LayerGradients stats = new LayerGradients(i, s.root().newSubManager(), perSample && options.term() == null, options.sums(), options.term())) {
            LayerWeights w = LayerWeights.load(source, config, i, layer);
            for (int c = 0; c < s.chunks().size(); c++) {
                int b = s.chunks().get(c)[1];
                List<NDArray> pieces = new ArrayList<>();
                try (NDManager chunk = s.root().newSubManager()) {
                    NDArray x = s.store().get(i, c, s.shape(c, config.hiddenSize()), chunk);
                    int step = perSample ? 1 : b;
                    for (int k = 0; k < b; k += step) {
                        NDIndex rows = new NDIndex("{}:{}", k, k + step);
                        pieces.add(backwardPiece(w, x.get(rows), upstream.get(c).get(rows), s, stats, chunk, step == 1));
                    }
                    NDArray dx = pieces.size() == 1 ? pieces.get(0) : NDArrays.concat(new NDList(pieces), 0);
                    below.add(keep(dx, into));
                }
            }
            consumer.layerDone(w, stats);
        }
        return below;
    }

    /** One backward piece; returns dL/dx for its windows (in {@code owner}); adds the weights' gradients. */
    private NDArray backwardPiece(LayerWeights w, NDArray xView, NDArray dyView, Sweep s, LayerGradients stats,
                                  NDManager owner, boolean oneSample) {
        try (NDManager scope = s.root().newSubManager()) {
            NDArray x = xView.duplicate(); // a fresh leaf: a view of the stored chunk cannot require gradients
            x.attach(scope);
            NDArray dy = dyView.duplicate();
            dy.attach(scope);
            xView.close();
            dyView.close();
            x.setRequiresGradient(true);
            // detached aliases of the weights (no copy) as fresh leaves, so each piece's .grad starts empty
            LayerWeights leaves = LayerParam.map(w, a -> {
                NDArray leaf = a.stopGradient();
                leaf.attach(scope);
                leaf.setRequiresGradient(true);
                return leaf;
            });
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray y = layer(leaves, x, s, LayerHooks.NONE);
                // vector-Jacobian product: d(sum(y * dy))/dθ = dyᵀ ∂y/∂θ
                gc.backward(y.mul(dy).sum());
            }
            for (LayerParam p : LayerParam.values()) {
                NDArray leaf = p.of(leaves);
                if (leaf != null) {
                    stats.add(p, p.of(w), leaf.getGradient(), oneSample);
                }
            }
            stats.countSamples((int) x.getShape().get(0));
            return keep(x.getGradient(), owner);
        }
    }

    /** A copy of {@code a} owned by {@code into} (gradients are aliases of their leaf's .grad). */
    private static NDArray keep(NDArray a, NDManager into) {
        NDArray copy = a.duplicate();
        copy.attach(into);
        return copy;
    }

    private static long bytes(LayerWeights w) {
        long total = 0;
        for (LayerParam p : LayerParam.values()) {
            NDArray a = p.of(w);
            total += a == null ? 0 : a.size() * 4;
        }
        return total;
    }

    private static double seconds(long since) {
        return (System.nanoTime() - since) / 1e9;
    }
}
