package dev.lopper.pruning.surgery;

import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.io.TensorSource;

import dev.lopper.model.io.StoredBytes;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Applies a plan: the result is a dense, smaller model whose layers may each have different head and channel
 * counts. Nothing is computed up front: {@link Result#tensors()} slices each tensor from the source when it is
 * loaded, so saving streams tensor by tensor and never holds the whole model; a save in the stored dtype does not
 * even convert: kept rows/columns are copied from the checkpoint's bytes ({@link StoredSlice}) and untouched
 * tensors (embeddings, norms, the LM head) byte for byte through the file channel. Removed layers are dropped and the
 * following layers renumbered ({@code model.layers.5.} becomes {@code model.layers.4.} after removing layer 3).
 *
 * <p>Which rows/columns go is read from {@link StructureGraph#layerTensors}: the graph is the only place that
 * knows the coupling. Tensors of a layer the plan leaves whole are passed through untouched (bit-identical).
 */
public final class Surgery {
    private Surgery() {
    }

    /**
     * The pruned model.
     *
     * @param config its config (per-layer shapes; {@link ModelConfig#toJson()} writes standard HF fields when
     *               layers agree, else {@code lopper_layers})
     * @param tensors its weights: a {@link TensorMap} over a view that slices each tensor from the source when it
     *                is loaded; {@code put} adds or replaces tensors (e.g. FLAP's compensation biases, then set the
     *                {@link LayerShape#withBiases} flags in the config)
     * @param selections what each original layer kept
     */
    public record Result(ModelConfig config, TensorMap tensors, List<LayerSelection> selections) {
        /** New index of original layer {@code original}, or -1 when it was removed. */
        public int newIndex(int original) {
            int j = 0;
            for (LayerSelection s : selections) {
                if (s.layer() == original) {
                    return s.removed() ? -1 : j;
                }
                if (!s.removed()) {
                    j++;
                }
            }
            throw new IllegalArgumentException("no layer " + original);
        }
    }

    /** Validates {@code plan} against {@code config} and applies it (hidden-dimension cuts included). */
    public static Result apply(ModelConfig config, TensorSource source, PruningPlan plan) {
        return apply(config, source, plan.resolve(config), plan.keptHidden(config), plan.hidden() != null && plan.hidden().rescale());
    }

    /** Applies resolved selections (one per original layer); the residual stream stays whole. */
    public static Result apply(ModelConfig config, TensorSource source, List<LayerSelection> selections) {
        return apply(config, source, selections, LayerSelection.range(config.hiddenSize()), false);
    }

    /**
     * Applies resolved selections and keeps the residual-stream channels {@code keptHidden} (ascending) in every
     * tensor with a hidden axis ({@link StructureGraph#hiddenChannels}). With {@code rescaleNorms} every hidden-size
     * RMSNorm weight is multiplied by {@code sqrt(d / d_kept)} and {@code rms_norm_eps} by {@code d / d_kept}
     * ({@link #rescaledConfig}): the pruned model then equals the dense model with the removed channels zeroed
     * ({@code HiddenPruningTest}); without it the RMS is the mean over the kept channels (Minitron's slicing).
     */
    public static Result apply(ModelConfig config, TensorSource source, List<LayerSelection> selections, int[] keptHidden,
                               boolean rescaleNorms) {
        if (selections.size() != config.numLayers()) {
            throw new IllegalArgumentException("surgery: " + selections.size() + " layer selections for " + config.numLayers() + " layers");
        }
        StructureGraph graph = StructureGraph.of(config);
        int d = config.headDim();
        boolean hiddenCut = keptHidden.length != config.hiddenSize();
        long[] hid = hiddenCut ? expand(keptHidden, 1) : null;
        double normScale = hiddenCut && rescaleNorms ? Math.sqrt((double) config.hiddenSize() / keptHidden.length) : 1.0;
        Map<String, Cut> cuts = new LinkedHashMap<>();
        Map<Integer, LayerSelection> byLayer = new LinkedHashMap<>();
        int[] newIndex = new int[config.numLayers()];
        int next = 0;
        for (LayerSelection s : selections) {
            byLayer.put(s.layer(), s);
            newIndex[s.layer()] = s.removed() ? -1 : next++;
        }
        // tensors in source order, so that a save keeps the checkpoint's layout
        for (String name : source.names()) {
            int layer = WeightNames.layerOf(name);
            if (layer < 0) {
                Cut whole = Cut.whole(name, source.shape(name));
                if (hiddenCut && (name.equals(WeightNames.EMBED) || name.equals(WeightNames.LM_HEAD))) {
                    whole = whole.cut(1, hid);
                } else if (hiddenCut && name.equals(WeightNames.FINAL_NORM)) {
                    whole = whole.cut(0, hid).scaled(normScale);
                }
                cuts.put(name, whole);
                continue;
            }
            if (layer >= config.numLayers()) {
                throw new IllegalArgumentException("surgery: tensor '" + name + "' is in layer " + layer + ", but the config has "
                        + config.numLayers() + " layers");
            }
            if (newIndex[layer] < 0) {
                continue;
            }
            String renamed = WeightNames.layerPrefix(newIndex[layer]) + name.substring(WeightNames.layerPrefix(layer).length());
            cuts.put(renamed, Cut.whole(name, source.shape(name)));
        }
        for (int i = 0; i < config.numLayers(); i++) {
            LayerSelection s = byLayer.get(i);
            boolean unchanged = s.unchanged(config.layer(i));
            if (s.removed() || (unchanged && !hiddenCut)) {
                continue;
            }
            for (StructureGraph.Tensor t : graph.layerTensors(i)) {
                String renamed = WeightNames.layerPrefix(newIndex[i]) + t.name().substring(WeightNames.layerPrefix(i).length());
                Cut c = cuts.get(renamed);
                if (c == null) {
                    throw new IllegalArgumentException("surgery: tensor '" + t.name() + "' is missing from the source");
                }
                if (!t.whole() && !unchanged) {
                    if (t.headAxis() >= 0) {
                        c = c.cut(t.headAxis(), expand(s.keptHeads(), d));
                    } else if (t.kvAxis() >= 0) {
                        c = c.cut(t.kvAxis(), expand(s.keptKvGroups(), d));
                    } else {
                        c = c.cut(t.channelAxis(), expand(s.keptChannels(), 1));
                    }
                }
                if (hiddenCut && t.hiddenAxis() >= 0) {
                    c = c.cut(t.hiddenAxis(), hid);
                    if (t.name().endsWith("layernorm.weight")) {
                        c = c.scaled(normScale);
                    }
                }
                cuts.put(renamed, c);
            }
        }
        ModelConfig pruned = LayerSelection.prunedConfig(config, selections);
        if (hiddenCut) {
            pruned = rescaleNorms ? rescaledConfig(pruned, config.hiddenSize(), keptHidden.length) : pruned.withHiddenSize(keptHidden.length);
        }
        return new Result(pruned, new TensorMap(new Sliced(source, cuts)), selections);
    }

    /**
     * The config of a model whose residual stream went from {@code d} to {@code kept} channels with the norms
     * rescaled: {@code rms_norm_eps x d / kept}, so that {@code sqrt(mean_kept(x^2) + eps') = sqrt(d / kept) x
     * sqrt(mean_d(x^2) + eps)} for a stream whose removed channels are zero, and the rescaled weights cancel the
     * factor exactly. Qwen3's q/k norms share {@code rms_norm_eps} and act on head_dim, which does not change:
     * there eps stays (the match is then exact up to eps; docs/PRUNING.md).
     */
    public static ModelConfig rescaledConfig(ModelConfig config, int d, int kept) {
        ModelConfig c = config.withHiddenSize(kept);
        return config.family().hasQkNorm() ? c : c.withRmsNormEps(config.rmsNormEps() * d / kept);
    }

    /** Saves a surgery result as an HF directory (tokenizer files copied from {@code sideFilesFrom}), plus the plan. */
    public static long save(Result result, Path out, Path sideFilesFrom, PruningPlan plan) throws IOException {
        return save(result, out, sideFilesFrom, plan, null);
    }

    /** {@link #save(Result, Path, Path, PruningPlan)} with every floating tensor stored as {@code storeAs} (null: as each is). */
    public static long save(Result result, Path out, Path sideFilesFrom, PruningPlan plan, ai.djl.ndarray.types.DataType storeAs) throws IOException {
        long bytes = ModelWriter.save(out, result.config(), result.tensors(), storeAs, sideFilesFrom,
                ModelWriter.DEFAULT_MAX_SHARD_BYTES, Map.of("format", "pt"));
        if (plan != null) {
            plan.save(out.resolve(PLAN_FILE));
        }
        return bytes;
    }

    /** The plan a pruned model directory was made with. */
    public static final String PLAN_FILE = "lopper_plan.json";

    /** Indices of units of width {@code w}: [u*w, (u+1)*w) for each kept unit u, ascending. */
    static long[] expand(int[] units, int w) {
        long[] out = new long[units.length * w];
        for (int i = 0; i < units.length; i++) {
            for (int j = 0; j < w; j++) {
                out[i * w + j] = (long) units[i] * w + j;
            }
        }
        return out;
    }

    /**
     * One output tensor: source name, the kept rows and columns (null = all) and a factor every element is
     * multiplied by (the rescaled norms; 1 otherwise).
     */
    private record Cut(String source, long[] rows, long[] cols, Shape shape, double scale) {
        static Cut whole(String source, Shape shape) {
            return new Cut(source, null, null, shape, 1.0);
        }

        /** This cut keeping only {@code idx} along {@code axis} as well. */
        Cut cut(int axis, long[] idx) {
            long[] dims = shape.getShape().clone();
            dims[axis] = idx.length;
            return axis == 0 ? new Cut(source, idx, cols, new Shape(dims), scale) : new Cut(source, rows, idx, new Shape(dims), scale);
        }

        Cut scaled(double factor) {
            return new Cut(source, rows, cols, shape, scale * factor);
        }

        boolean sliced() {
            return rows != null || cols != null;
        }

        /** The one sliced axis when a stored-bytes copy can do it (one axis, no scaling), else -1. */
        int singleAxis() {
            if (scale != 1.0 || (rows != null && cols != null)) {
                return -1;
            }
            return rows != null ? 0 : cols != null ? 1 : -1;
        }
    }

    /** The lazily sliced view of the source. */
    private static final class Sliced implements TensorSource {
        private final TensorSource source;
        private final Map<String, Cut> cuts;

        Sliced(TensorSource source, Map<String, Cut> cuts) {
            this.source = source;
            this.cuts = cuts;
        }

        @Override
        public Set<String> names() {
            return Collections.unmodifiableSet(cuts.keySet());
        }

        @Override
        public boolean has(String name) {
            return cuts.containsKey(name);
        }

        @Override
        public Shape shape(String name) {
            return cut(name).shape();
        }

        @Override
        public DataType storedType(String name) {
            return source.storedType(cut(name).source());
        }

        @Override
        public NDArray load(String name, NDManager manager, DataType type) {
            Cut c = cut(name);
            if (!c.sliced() && c.scale() == 1.0) {
                return source.load(c.source(), manager, type);
            }
            try (NDManager scope = manager.newSubManager()) {
                // scaled tensors are multiplied in fp32 and rounded once to the requested type
                NDArray out = source.load(c.source(), scope, c.scale() == 1.0 ? type : DataType.FLOAT32);
                // index_select along each axis; a fresh contiguous tensor, not a view into the loaded one
                if (c.rows() != null) {
                    out = out.get(new NDIndex("{}", scope.create(c.rows())));
                }
                if (c.cols() != null) {
                    out = out.get(new NDIndex(":, {}", scope.create(c.cols())));
                }
                if (c.scale() != 1.0) {
                    // rounded to the stored dtype first: what a save writes is what a load in memory gives
                    out = roundedTo(out.mul((float) c.scale()), source.storedType(c.source()), scope).toType(type, false);
                }
                out = out.duplicate();
                out.attach(manager);
                return out;
            }
        }

        /** fp32 values rounded to {@code stored} (bf16 by hand: DJL's PyTorch engine aborts on a bf16 cast). */
        private static NDArray roundedTo(NDArray fp32, DataType stored, NDManager scope) {
            if (stored == DataType.BFLOAT16) {
                java.nio.ByteBuffer f = dev.lopper.model.io.BFloat16.toFloat32(dev.lopper.model.io.BFloat16.fromFloat32(fp32.toFloatArray()));
                float[] v = new float[fp32.getShape().size() > Integer.MAX_VALUE ? 0 : (int) fp32.getShape().size()];
                f.asFloatBuffer().get(v);
                return scope.create(v, fp32.getShape());
            }
            return stored == DataType.FLOAT32 ? fp32 : fp32.toType(stored, false).toType(DataType.FLOAT32, false);
        }

        @Override
        public StoredBytes stored(String name) {
            Cut c = cut(name);
            return !c.sliced() && c.scale() == 1.0 ? source.stored(c.source()) : null;
        }

        @Override
        public boolean writeStored(String name, WritableByteChannel out) throws IOException {
            Cut c = cut(name);
            if (!c.sliced() && c.scale() == 1.0) {
                return source.writeStored(c.source(), out);
            }
            int axis = c.singleAxis();
            StoredBytes s = source.stored(c.source());
            if (axis < 0 || s == null || !(out instanceof FileChannel file)) {
                return false; // two axes or a rescale: the writer loads the tensor through load() instead
            }
            long[] dims = source.shape(c.source()).getShape();
            StoredSlice.write(s, dims, axis, axis == 0 ? c.rows() : c.cols(), source.storedType(c.source()).getNumOfBytes(), file);
            return true;
        }

        private Cut cut(String name) {
            Cut c = cuts.get(name);
            if (c == null) {
                throw new IllegalArgumentException("no tensor '" + name + "' in the pruned model");
            }
            return c;
        }
    }
}
