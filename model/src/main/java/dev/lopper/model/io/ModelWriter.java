package dev.lopper.model.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.config.ModelConfig;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Saves a model as an HF directory: config.json, model.safetensors (or shards + index) and the tokenizer files
 * copied from the source (Phi-3's projections re-fused, {@link FusedLayout}). The directory is built under a temporary name beside the target and moved into place
 * only when complete, so a failed save leaves nothing half-written.
 */
public final class ModelWriter {
    /** Files copied unchanged from the source model directory when present. */
    public static final List<String> SIDE_FILES = List.of("tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "generation_config.json");

    /** HF's default shard size for save_pretrained. */
    public static final long DEFAULT_MAX_SHARD_BYTES = 5L * 1000 * 1000 * 1000;

    private ModelWriter() {
    }

    /**
     * @param storeAs dtype to write every floating tensor in, or null to keep each tensor's stored dtype
     * @param sideFilesFrom a directory to copy tokenizer/generation files from, or null
     * @return bytes of tensor data written
     */
    public static long save(Path out, ModelConfig config, TensorSource tensors, DataType storeAs, Path sideFilesFrom,
                            long maxShardBytes, Map<String, String> metadata) throws IOException {
        Path target = out.toAbsolutePath();
        OutputGuard.checkNotOverlapping(target, "--out", sideFilesFrom);
        Path tmp = AtomicDirectory.createTemp(target);
        try {
            ObjectNode json = config.toJson();
            if (storeAs != null) {
                json.put("torch_dtype", storeAs == DataType.BFLOAT16 ? "bfloat16" : storeAs == DataType.FLOAT16 ? "float16" : "float32");
            }
            new ObjectMapper().writerWithDefaultPrettyPrinter().writeValue(tmp.resolve("config.json").toFile(), json);
            // a family that fuses projections on disk (Phi-3) is written in its own layout
            TensorSource stored = config.family().fusedProjections() ? FusedLayout.fuse(tensors) : tensors;
            long bytes = writeTensors(tmp, stored, storeAs, maxShardBytes, metadata);
            if (sideFilesFrom != null) {
                for (String f : SIDE_FILES) {
                    if (Files.exists(sideFilesFrom.resolve(f))) {
                        Files.copy(sideFilesFrom.resolve(f), tmp.resolve(f));
                    }
                }
            }
            OutputGuard.writeMarker(tmp, "model");
            AtomicDirectory.replace(tmp, target);
            return bytes;
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
    }

    private static long writeTensors(Path dir, TensorSource tensors, DataType storeAs, long maxShardBytes,
                                     Map<String, String> metadata) throws IOException {
        List<List<SafeTensorsWriter.Entry>> shards = new ArrayList<>();
        List<SafeTensorsWriter.Entry> current = new ArrayList<>();
        long currentBytes = 0;
        long total = 0;
        for (String name : tensors.names()) {
            DataType stored = tensors.storedType(name);
            DataType type = storeAs != null && stored.isFloating() ? storeAs : stored;
            SafeTensorsWriter.Entry e = new SafeTensorsWriter.Entry(name, type, tensors.shape(name), out -> write(tensors, name, type, out));
            if (!current.isEmpty() && currentBytes + e.byteLength() > maxShardBytes) {
                shards.add(current);
                current = new ArrayList<>();
                currentBytes = 0;
            }
            current.add(e);
            currentBytes += e.byteLength();
            total += e.byteLength();
        }
        shards.add(current);
        if (shards.size() == 1) {
            SafeTensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), shards.get(0), metadata);
            return total;
        }
        ObjectMapper json = new ObjectMapper();
        ObjectNode index = json.createObjectNode();
        index.putObject("metadata").put("total_size", total);
        ObjectNode weightMap = index.putObject("weight_map");
        for (int i = 0; i < shards.size(); i++) {
            String file = String.format("model-%05d-of-%05d.safetensors", i + 1, shards.size());
            SafeTensorsWriter.write(dir.resolve(file), shards.get(i), metadata);
            for (SafeTensorsWriter.Entry e : shards.get(i)) {
                weightMap.put(e.name(), file);
            }
        }
        json.writerWithDefaultPrettyPrinter().writeValue(dir.resolve(Checkpoint.INDEX_FILE).toFile(), index);
        return total;
    }

    /**
     * Writes one tensor in {@code type}. A tensor kept in its stored dtype is copied (or sliced) from the source
     * file byte for byte, never converted or held whole; anything else (an array in memory, a dtype change) is
     * converted into one buffer, which is freed right after the write rather than at some later GC.
     */
    private static void write(TensorSource tensors, String name, DataType type, FileChannel out) throws IOException {
        if (tensors.storedType(name) == type && tensors.writeStored(name, out)) {
            return;
        }
        ByteBuffer b = bytesOf(tensors, name, type);
        try {
            SafeTensorsWriter.writeFully(out, b);
        } finally {
            DirectBuffers.free(b);
        }
    }

    /** Elements converted per heap array: 64 MiB of floats. */
    private static final int CHUNK = 1 << 24;

    /**
     * fp32 -> bf16 a slice at a time, so that the heap holds one slice, never the whole tensor (a 128k-vocab
     * embedding of width 4096 is 2 GiB of floats, beyond a small -Xmx; the fp32 copy itself is native memory).
     */
    static ByteBuffer bf16InChunks(NDArray a, int chunk) {
        NDArray flat = a.reshape(-1);
        long n = flat.size();
        ByteBuffer out = ByteBuffer.allocateDirect(Math.toIntExact(n * 2)).order(ByteOrder.LITTLE_ENDIAN);
        for (long from = 0; from < n; from += chunk) {
            try (NDManager slice = a.getManager().newSubManager()) {
                NDArray part = flat.get(new NDIndex("{}:{}", from, Math.min(n, from + chunk)));
                part.attach(slice);
                BFloat16.putFromFloat32(out, part.toFloatArray());
            }
        }
        return out.flip();
    }

    /** One tensor's bytes in {@code type}, converted through an array. */
    private static ByteBuffer bytesOf(TensorSource tensors, String name, DataType type) {
        ByteBuffer fused = FusedLayout.rawBytes(tensors, name, type);
        if (fused != null) {
            return fused;
        }
        try (NDManager m = NDManager.newBaseManager(ai.djl.Device.cpu())) {
            if (type == DataType.BFLOAT16) {
                return bf16InChunks(tensors.load(name, m, DataType.FLOAT32), CHUNK);
            }
            NDArray a = tensors.load(name, m, type);
            ByteBuffer data = a.toByteBuffer();
            ByteBuffer copy = ByteBuffer.allocateDirect(data.remaining()).order(ByteOrder.LITTLE_ENDIAN);
            copy.put(data).flip();
            return copy;
        }
    }
}
