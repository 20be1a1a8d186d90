package dev.lopper.calibration;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.io.AtomicDirectory;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * The state of a streaming calibration after a finished layer, on disk, so that a killed run resumes there: the
 * hidden states that feed the next layer (fp32, exactly as they were) and every collector's statistics of the
 * finished layers. Written atomically as {@code DIR/layer-NNNNN} (built beside, then renamed), and only the latest
 * is kept. A checkpoint belongs to one job: its {@code key} (data, model, collectors) must match to be used.
 *
 * <pre>{@code
 * LayerCheckpoint.write(dir, key, 3, hidden, collectors);          // after layer 3
 * LayerCheckpoint.Restored r = LayerCheckpoint.latest(dir, key, manager, collectors);  // null: start afresh
 * }</pre>
 */
public final class LayerCheckpoint {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String PREFIX = "layer-";

    private LayerCheckpoint() {
    }

    /** A restored state: the last finished layer and the next layer's input chunks. */
    public record Restored(int layer, List<NDArray> hidden) {
    }

    /** Saves the state after {@code layer}; older checkpoints in {@code dir} are removed once it is in place. */
    public static void write(Path dir, String key, int layer, List<NDArray> hidden, List<? extends StatsCollector> collectors)
            throws IOException {
        Path target = dir.resolve(String.format("%s%05d", PREFIX, layer));
        Files.createDirectories(dir);
        Path tmp = AtomicDirectory.createTemp(target);
        try {
            try (FileChannel ch = FileChannel.open(tmp.resolve("hidden.f32"), StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                for (NDArray h : hidden) {
                    ByteBuffer head = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN);
                    for (long d : h.getShape().getShape()) {
                        head.putLong(d);
                    }
                    head.flip();
                    write(ch, head);
                    write(ch, h.toByteBuffer());
                }
            }
            for (int c = 0; c < collectors.size(); c++) {
                try (DataOutputStream out = new DataOutputStream(new BufferedOutputStream(Files.newOutputStream(tmp.resolve("stats-" + c + ".bin"))))) {
                    for (int l = 0; l <= layer; l++) {
                        collectors.get(c).saveLayer(l, out);
                    }
                }
            }
            ObjectNode meta = JSON.createObjectNode().put("key", key).put("layer", layer).put("chunks", hidden.size())
                    .put("collectors", collectors.size());
            JSON.writeValue(tmp.resolve("meta.json").toFile(), meta);
            // the marker lets AtomicDirectory replace an older checkpoint of the same layer
            dev.lopper.model.io.OutputGuard.writeMarker(tmp, "calibration-checkpoint");
            AtomicDirectory.replace(tmp, target);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
        for (Path old : checkpoints(dir)) {
            if (!old.equals(target)) {
                AtomicDirectory.deleteTree(old);
            }
        }
    }

    /**
     * The latest checkpoint of job {@code key} in {@code dir}, its statistics loaded into {@code collectors} and its
     * hidden states into {@code manager}; null when there is none (or it belongs to another job or is unreadable,
     * in which case the run starts afresh).
     */
    public static Restored latest(Path dir, String key, NDManager manager, List<? extends StatsCollector> collectors) {
        if (dir == null || !Files.isDirectory(dir)) {
            return null;
        }
        try {
            List<Path> all = checkpoints(dir);
            if (all.isEmpty()) {
                return null;
            }
            Path last = all.get(all.size() - 1);
            JsonNode meta = JSON.readTree(last.resolve("meta.json").toFile());
            if (!key.equals(meta.path("key").asText()) || meta.path("collectors").asInt() != collectors.size()) {
                return null;
            }
            int layer = meta.path("layer").asInt();
            for (int c = 0; c < collectors.size(); c++) {
                try (DataInputStream in = new DataInputStream(new BufferedInputStream(Files.newInputStream(last.resolve("stats-" + c + ".bin"))))) {
                    for (int l = 0; l <= layer; l++) {
                        collectors.get(c).loadLayer(l, in);
                    }
                }
            }
            List<NDArray> hidden = new ArrayList<>();
            try (FileChannel ch = FileChannel.open(last.resolve("hidden.f32"), StandardOpenOption.READ)) {
                for (int i = 0; i < meta.path("chunks").asInt(); i++) {
                    ByteBuffer head = read(ch, 24);
                    Shape shape = new Shape(head.getLong(), head.getLong(), head.getLong());
                    ByteBuffer data = read(ch, Math.toIntExact(shape.size() * 4));
                    hidden.add(manager.create(data, shape, DataType.FLOAT32));
                }
            }
            return new Restored(layer, hidden);
        } catch (IOException | RuntimeException e) {
            return null; // a damaged checkpoint only costs the work it held
        }
    }

    /** Removes the job's checkpoints (after it has finished). */
    public static void clear(Path dir) throws IOException {
        AtomicDirectory.deleteTree(dir);
    }

    private static List<Path> checkpoints(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().startsWith(PREFIX) && Files.isDirectory(p))
                    .sorted(Comparator.comparing(p -> p.getFileName().toString())).toList();
        }
    }

    private static void write(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    private static ByteBuffer read(FileChannel ch, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocateDirect(n).order(ByteOrder.LITTLE_ENDIAN);
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new IOException("checkpoint ends early");
            }
        }
        return b.flip();
    }
}
