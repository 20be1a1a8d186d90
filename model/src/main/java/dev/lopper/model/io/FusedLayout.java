package dev.lopper.model.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The weight layout of families that fuse projections on disk (Phi-3): {@code qkv_proj} holds the rows of q, then
 * k, then v; {@code gate_up_proj} the rows of gate, then up. Everything else in Lopper (the layer description,
 * structure graph, criteria, surgery) works on the logical q/k/v/gate/up names: {@link #split} presents a fused
 * checkpoint that way (row slices of the mapped file, no copy) and {@link #fuse} turns logical tensors back into
 * the family's own layout for a save, so that the family's loaders read it.
 */
public final class FusedLayout {
    private FusedLayout() {
    }

    /** Logical tensor entries for a fused checkpoint's entries; unfused names pass through unchanged. */
    static Map<String, TensorInfo> split(Map<String, TensorInfo> tensors, ModelConfig config, Path dir) {
        Map<String, TensorInfo> out = new LinkedHashMap<>();
        for (TensorInfo t : tensors.values()) {
            int layer = WeightNames.layerOf(t.name());
            if (layer >= 0 && layer < config.numLayers() && t.name().equals(WeightNames.qkv(layer))) {
                LayerShape s = config.layer(layer);
                long q = (long) s.numHeads() * config.headDim();
                long kv = (long) s.numKvHeads() * config.headDim();
                rows(out, t, dir, new long[] {q, kv, kv}, config.hiddenSize(), WeightNames.attn(layer, "q_proj", "weight"),
                        WeightNames.attn(layer, "k_proj", "weight"), WeightNames.attn(layer, "v_proj", "weight"));
            } else if (layer >= 0 && layer < config.numLayers() && t.name().equals(WeightNames.gateUp(layer))) {
                long im = config.layer(layer).intermediateSize();
                rows(out, t, dir, new long[] {im, im}, config.hiddenSize(), WeightNames.mlp(layer, "gate_proj", "weight"),
                        WeightNames.mlp(layer, "up_proj", "weight"));
            } else {
                out.put(t.name(), t);
            }
        }
        return Collections.unmodifiableMap(out);
    }

    /** Splits a [sum(rows), cols] entry into consecutive row blocks: contiguous byte ranges of the same file. */
    private static void rows(Map<String, TensorInfo> out, TensorInfo t, Path dir, long[] rows, long cols, String... names) {
        long total = 0;
        for (long r : rows) {
            total += r;
        }
        Shape expected = new Shape(total, cols);
        if (!t.shape().equals(expected)) {
            throw ModelFormatException.file(t.file(), "tensor '" + t.name() + "' has shape " + t.shape() + ", but config.json implies "
                    + expected);
        }
        long rowBytes = cols * t.dtype().getNumOfBytes();
        long begin = t.begin();
        for (int i = 0; i < rows.length; i++) {
            out.put(names[i], new TensorInfo(names[i], t.dtype(), new Shape(rows[i], cols), t.file(), begin, rows[i] * rowBytes));
            begin += rows[i] * rowBytes;
        }
    }

    /** {@code logical} as the family stores it: q/k/v weights as one {@code qkv_proj}, gate/up as {@code gate_up_proj}. */
    public static TensorSource fuse(TensorSource logical) {
        Map<String, List<String>> parts = new LinkedHashMap<>();
        Set<String> consumed = new LinkedHashSet<>();
        for (String name : logical.names()) {
            int layer = WeightNames.layerOf(name);
            if (layer < 0) {
                continue;
            }
            List<String> qkv = List.of(WeightNames.attn(layer, "q_proj", "weight"), WeightNames.attn(layer, "k_proj", "weight"),
                    WeightNames.attn(layer, "v_proj", "weight"));
            List<String> gateUp = List.of(WeightNames.mlp(layer, "gate_proj", "weight"), WeightNames.mlp(layer, "up_proj", "weight"));
            if (name.equals(qkv.get(0)) && qkv.stream().allMatch(logical::has)) {
                parts.put(WeightNames.qkv(layer), qkv);
                consumed.addAll(qkv);
            } else if (name.equals(gateUp.get(0)) && gateUp.stream().allMatch(logical::has)) {
                parts.put(WeightNames.gateUp(layer), gateUp);
                consumed.addAll(gateUp);
            }
        }
        return new Fused(logical, parts, consumed);
    }

    /**
     * The bytes of tensor {@code name} of a source made by {@link #fuse} when they can be had without converting
     * (parts stored in {@code type} in a checkpoint: their mapped bytes, concatenated); null otherwise.
     */
    static ByteBuffer rawBytes(TensorSource source, String name, DataType type) {
        if (!(source instanceof Fused f) || !(f.logical instanceof Checkpoint c)) {
            return null;
        }
        List<String> p = f.parts.getOrDefault(name, List.of(name));
        long total = 0;
        for (String part : p) {
            if (c.storedType(part) != type) {
                return null;
            }
            total += c.info(part).byteLength();
        }
        if (p.size() == 1) {
            return c.raw(name);
        }
        ByteBuffer out = ByteBuffer.allocateDirect(Math.toIntExact(total)).order(ByteOrder.LITTLE_ENDIAN);
        for (String part : p) {
            ByteBuffer mapped = c.raw(part);
            out.put(mapped);
            DirectBuffers.free(mapped);
        }
        return out.flip();
    }

    /** The fused view: each fused tensor sits where its first part was, so a save keeps the checkpoint's order. */
    private static final class Fused implements TensorSource {
        private final TensorSource logical;
        private final Map<String, List<String>> parts;
        private final Set<String> names;

        Fused(TensorSource logical, Map<String, List<String>> parts, Set<String> consumed) {
            this.logical = logical;
            this.parts = parts;
            Map<String, String> firstPart = new LinkedHashMap<>();
            parts.forEach((fused, p) -> firstPart.put(p.get(0), fused));
            Set<String> n = new LinkedHashSet<>();
            for (String name : logical.names()) {
                if (firstPart.containsKey(name)) {
                    n.add(firstPart.get(name));
                } else if (!consumed.contains(name)) {
                    n.add(name);
                }
            }
            this.names = Collections.unmodifiableSet(n);
        }

        @Override
        public Set<String> names() {
            return names;
        }

        @Override
        public Shape shape(String name) {
            List<String> p = parts.get(name);
            if (p == null) {
                return logical.shape(name);
            }
            long rows = 0;
            for (String part : p) {
                rows += logical.shape(part).get(0);
            }
            return new Shape(rows, logical.shape(p.get(0)).get(1));
        }

        @Override
        public DataType storedType(String name) {
            List<String> p = parts.get(name);
            return logical.storedType(p == null ? name : p.get(0));
        }

        @Override
        public NDArray load(String name, NDManager manager, DataType type) {
            List<String> p = parts.get(name);
            if (p == null) {
                return logical.load(name, manager, type);
            }
            try (NDManager scope = manager.newSubManager()) {
                NDList pieces = new NDList();
                for (String part : p) {
                    pieces.add(logical.load(part, scope, type));
                }
                NDArray out = NDArrays.concat(pieces, 0);
                out.attach(manager);
                return out;
            }
        }
    }
}
