package dev.lopper.model.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.config.ModelConfig;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;

/**
 * The weights of an HF model directory: {@code model.safetensors}, or shards listed in
 * {@code model.safetensors.index.json}. Tensors stay on disk (memory-mapped) until loaded one at a time.
 */
public final class Checkpoint implements TensorSource, AutoCloseable {
    public static final String SINGLE_FILE = "model.safetensors";
    public static final String INDEX_FILE = "model.safetensors.index.json";

    private final Path dir;
    private final Path source;
    private final Map<Path, SafeTensorsFile> files;
    private final Map<String, TensorInfo> tensors;

    private Checkpoint(Path dir, Path source, Map<Path, SafeTensorsFile> files, Map<String, TensorInfo> tensors) {
        this.dir = dir;
        this.source = source;
        this.files = files;
        this.tensors = tensors;
    }

    /** Opens the checkpoint of a model directory, validating every header (and the index, when sharded). */
    public static Checkpoint open(Path dir) {
        Path index = dir.resolve(INDEX_FILE);
        Path single = dir.resolve(SINGLE_FILE);
        Map<Path, SafeTensorsFile> files = new LinkedHashMap<>();
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        try {
            if (Files.exists(index)) {
                JsonNode weightMap = readIndex(index).get("weight_map");
                if (weightMap == null || !weightMap.isObject()) {
                    throw ModelFormatException.field(index, "weight_map", weightMap == null ? "nothing" : weightMap.getNodeType(),
                            "an object mapping tensor names to shard files");
                }
                for (Map.Entry<String, JsonNode> e : (Iterable<Map.Entry<String, JsonNode>>) weightMap::fields) {
                    Path shard = shardPath(dir, index, e.getKey(), e.getValue());
                    SafeTensorsFile f = files.get(shard);
                    if (f == null) {
                        if (!Files.exists(shard)) {
                            throw ModelFormatException.file(index, "tensor '" + e.getKey() + "' is in shard " + shard.getFileName() + ", which does not exist");
                        }
                        f = SafeTensorsFile.open(shard);
                        files.put(shard, f);
                    }
                    TensorInfo info = f.tensors().get(e.getKey());
                    if (info == null) {
                        throw ModelFormatException.file(shard, "tensor '" + e.getKey() + "' listed in " + INDEX_FILE + " is not in this shard");
                    }
                    tensors.put(e.getKey(), info);
                }
            } else if (Files.exists(single)) {
                SafeTensorsFile f = SafeTensorsFile.open(single);
                files.put(single, f);
                tensors.putAll(f.tensors());
            } else {
                String found;
                try (Stream<Path> s = Files.list(dir)) {
                    found = s.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".bin") || n.endsWith(".safetensors") || n.endsWith(".pt"))
                            .sorted().findFirst().map(n -> "found " + n).orElse("found no weights");
                } catch (IOException e) {
                    found = "cannot list it";
                }
                throw ModelFormatException.file(dir, found + "; expected " + SINGLE_FILE + " or " + INDEX_FILE + " (safetensors only)");
            }
        } catch (RuntimeException e) {
            files.values().forEach(SafeTensorsFile::close);
            throw e;
        }
        return new Checkpoint(dir, Files.exists(index) ? index : single, files, Collections.unmodifiableMap(tensors));
    }

    /** Index files above this size are refused rather than read into memory (real ones are a few hundred KB). */
    private static final long MAX_INDEX_BYTES = 64L * 1024 * 1024;

    private static JsonNode readIndex(Path index) {
        JsonNode root;
        try {
            if (Files.size(index) > MAX_INDEX_BYTES) {
                throw ModelFormatException.file(index, Files.size(index) + " bytes, expected an index of at most " + MAX_INDEX_BYTES);
            }
            root = new ObjectMapper().readTree(index.toFile());
        } catch (IOException e) {
            throw ModelFormatException.file(index, "not valid JSON: " + firstLine(e.getMessage()));
        }
        if (root == null || !root.isObject()) {
            throw ModelFormatException.file(index, "expected a JSON object with a weight_map");
        }
        return root;
    }

    /**
     * The shard a weight_map entry names: a plain file name in the model directory (HF writes nothing else), so an
     * index cannot make Lopper read files elsewhere.
     */
    private static Path shardPath(Path dir, Path index, String tensor, JsonNode value) {
        String name = value.isTextual() ? value.textValue() : null;
        if (name == null || name.isEmpty() || name.equals(".") || name.equals("..") || name.contains("/") || name.contains("\\")
                || name.indexOf('\0') >= 0) {
            throw ModelFormatException.field(index, "weight_map." + tensor, value, "a file name in this directory (a .safetensors shard)");
        }
        return dir.resolve(name);
    }

    private static String firstLine(String s) {
        return s == null ? "" : s.lines().findFirst().orElse("");
    }

    /** A single .safetensors file of any name as a checkpoint (reference outputs, exported tensors). */
    public static Checkpoint ofFile(Path file) {
        SafeTensorsFile f = SafeTensorsFile.open(file);
        Map<Path, SafeTensorsFile> files = new LinkedHashMap<>();
        files.put(file, f);
        return new Checkpoint(file, file, files, f.tensors());
    }

    /**
     * This checkpoint as the family of {@code config} is read: for families that fuse projections on disk
     * (Phi-3), the fused tensors appear as logical q/k/v and gate/up tensors ({@link FusedLayout}); otherwise this
     * checkpoint itself. The result owns the open files (close it, not this one).
     */
    public Checkpoint withLayout(ModelConfig config) {
        if (!config.family().fusedProjections()) {
            return this;
        }
        return new Checkpoint(dir, source, files, FusedLayout.split(tensors, config, dir));
    }

    public Path dir() {
        return dir;
    }

    /** The file that lists the tensors: the index of a sharded checkpoint, else the single .safetensors file. */
    public Path source() {
        return source;
    }

    @Override
    public Set<String> names() {
        return tensors.keySet();
    }

    public TensorInfo info(String name) {
        TensorInfo info = tensors.get(name);
        if (info == null) {
            throw ModelFormatException.file(dir, "tensor '" + name + "' is missing from the checkpoint");
        }
        return info;
    }

    @Override
    public Shape shape(String name) {
        return info(name).shape();
    }

    @Override
    public DataType storedType(String name) {
        return info(name).dtype();
    }

    /** Total bytes of tensor data. */
    public long dataBytes() {
        return tensors.values().stream().mapToLong(TensorInfo::byteLength).sum();
    }

    /** The mapped raw bytes of one tensor (little-endian, stored dtype). */
    public ByteBuffer raw(String name) {
        TensorInfo info = info(name);
        return files.get(info.file()).map(info);
    }

    @Override
    public StoredBytes stored(String name) {
        TensorInfo info = info(name);
        return files.get(info.file()).stored(info);
    }

    @Override
    public NDArray load(String name, NDManager manager, DataType type) {
        TensorInfo info = info(name);
        ByteBuffer mapped = raw(name);
        ByteBuffer bytes = mapped;
        DataType dtype = info.dtype();
        if (dtype == DataType.BFLOAT16 && "cpu".equals(manager.getDevice().getDeviceType()) && info.shape().size() > 0) {
            // widened straight into the memory of a new (uninitialized) libtorch tensor: one pass, where the staging
            // path below zero-fills a direct buffer, widens into it and copies it again (3x the memory traffic)
            // (DJL's toByteBuffer(true) of a CPU tensor is a view of its memory; SafeTensorsTest checks every bit)
            NDArray out = manager.create(info.shape(), DataType.FLOAT32);
            try {
                BFloat16.widenInto(mapped, out.toByteBuffer(true));
            } catch (RuntimeException e) {
                out.close();
                throw e;
            } finally {
                DirectBuffers.free(mapped);
            }
            if (type == DataType.FLOAT32) {
                return out;
            }
            try (out) {
                return out.toType(type, false);
            }
        }
        if (dtype == DataType.BFLOAT16) {
            bytes = BFloat16.toFloat32(bytes);
            dtype = DataType.FLOAT32;
        }
        // DJL wraps a direct buffer without copying (torch::from_blob), and toType of the same dtype returns an
        // alias; so copy explicitly, so that no weight ever points into a mapping that is later released.
        try (NDArray stored = manager.create(bytes, info.shape(), dtype)) {
            return type == dtype ? stored.duplicate() : stored.toType(type, false);
        } finally {
            // Both buffers are ours alone and already copied into libtorch: release them now, not at some GC, so
            // streaming a checkpoint larger than memory holds neither fp32 copies nor mapped pages of old layers.
            if (bytes != mapped) {
                DirectBuffers.free(bytes);
            }
            DirectBuffers.free(mapped);
        }
    }

    @Override
    public void close() {
        files.values().forEach(SafeTensorsFile::close);
    }
}
