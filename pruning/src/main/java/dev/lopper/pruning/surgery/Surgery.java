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

    /** Validates {@code plan} against {@code config} and applies it. */
    public static Result apply(ModelConfig config, TensorSource source, PruningPlan plan) {
        return apply(config, source, plan.resolve(config));
    }

    /** Applies resolved selections (one per original layer). */
    public static Result apply(ModelConfig config, TensorSource source, List<LayerSelection> selections) {
        if (selections.size() != config.numLayers()) {
            throw new IllegalArgumentException("surgery: " + selections.size() + " layer selections for " + config.numLayers() + " layers");
        }
        StructureGraph graph = StructureGraph.of(config);
        int d = config.headDim();
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
                cuts.put(name, new Cut(name, -1, null, source.shape(name)));
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
            cuts.put(renamed, new Cut(name, -1, null, source.shape(name)));
        }
        for (int i = 0; i < config.numLayers(); i++) {
            LayerSelection s = byLayer.get(i);
            if (s.removed() || s.unchanged(config.layer(i))) {
                continue;
            }
            for (StructureGraph.Tensor t : graph.layerTensors(i)) {
                if (t.whole()) {
                    continue;
                }
                String renamed = WeightNames.layerPrefix(newIndex[i]) + t.name().substring(WeightNames.layerPrefix(i).length());
                Cut base = cuts.get(renamed);
                if (base == null) {
                    throw new IllegalArgumentException("surgery: tensor '" + t.name() + "' is missing from the source");
                }
                long[] idx;
                int axis;
                if (t.headAxis() >= 0) {
                    axis = t.headAxis();
                    idx = expand(s.keptHeads(), d);
                } else if (t.kvAxis() >= 0) {
                    axis = t.kvAxis();
                    idx = expand(s.keptKvGroups(), d);
                } else {
                    axis = t.channelAxis();
                    idx = expand(s.keptChannels(), 1);
                }
                long[] dims = base.shape().getShape().clone();
                dims[axis] = idx.length;
                cuts.put(renamed, new Cut(t.name(), axis, idx, new Shape(dims)));
            }
        }
        return new Result(LayerSelection.prunedConfig(config, selections), new TensorMap(new Sliced(source, cuts)), selections);
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

    /** One output tensor: source name, and the kept indices along {@code axis} (null = the whole tensor). */
    private record Cut(String source, int axis, long[] indices, Shape shape) {
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
            if (c.indices() == null) {
                return source.load(c.source(), manager, type);
            }
            try (NDManager scope = manager.newSubManager()) {
                NDArray full = source.load(c.source(), scope, type);
                NDArray idx = scope.create(c.indices());
                // index_select along the axis; a fresh contiguous tensor, not a view into `full`
                NDArray out = c.axis() == 0 ? full.get(new NDIndex("{}", idx)) : full.get(new NDIndex(":, {}", idx));
                out.attach(manager);
                return out;
            }
        }

        @Override
        public StoredBytes stored(String name) {
            Cut c = cut(name);
            return c.indices() == null ? source.stored(c.source()) : null;
        }

        @Override
        public boolean writeStored(String name, WritableByteChannel out) throws IOException {
            Cut c = cut(name);
            if (c.indices() == null) {
                return source.writeStored(c.source(), out);
            }
            StoredBytes s = source.stored(c.source());
            if (s == null || !(out instanceof FileChannel file)) {
                return false;
            }
            long[] dims = source.shape(c.source()).getShape();
            StoredSlice.write(s, dims, c.axis(), c.indices(), source.storedType(c.source()).getNumOfBytes(), file);
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
