package dev.lopper.export.gguf;

import java.io.IOException;
import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Reads a GGUF v3 file back: metadata, tensor infos, and any tensor's values as fp32 (F32, F16, BF16, Q8_0
 * dequantized). Independent of {@link GgufWriter}'s code paths so the tests check the file, not the writer
 * against itself.
 *
 * <pre>{@code
 * try (GgufReader r = GgufReader.open(Path.of("out/model.gguf"))) {
 *     String arch = r.string("general.architecture");
 *     float[] norm = r.values("output_norm.weight");
 * }
 * }</pre>
 */
public final class GgufReader implements AutoCloseable {
    /** A tensor's name, type, dims (innermost first) and offset from the start of the data section. */
    public record TensorInfo(String name, GgmlType type, long[] dims, long offset) {
        public long elements() {
            long n = 1;
            for (long d : dims) {
                n *= d;
            }
            return n;
        }
    }

    private final Path file;
    private final FileChannel ch;
    private final Map<String, GgufValue> metadata = new LinkedHashMap<>();
    private final Map<String, TensorInfo> tensors = new LinkedHashMap<>();
    private final long dataStart;
    private final int version;

    private GgufReader(Path file) throws IOException {
        this.file = file;
        this.ch = FileChannel.open(file);
        ByteBuffer b = ch.map(FileChannel.MapMode.READ_ONLY, 0, Math.min(ch.size(), Integer.MAX_VALUE)).order(ByteOrder.LITTLE_ENDIAN);
        try {
            if (b.getInt() != GgufWriter.MAGIC) {
                throw error("does not start with the magic 'GGUF'");
            }
            version = b.getInt();
            if (version != 3) {
                throw error("GGUF version " + version + ", expected 3");
            }
            long nTensors = b.getLong();
            long nKv = b.getLong();
            for (long i = 0; i < nKv; i++) {
                String key = string(b);
                metadata.put(key, value(b, GgufValue.Type.of(b.getInt())));
            }
            for (long i = 0; i < nTensors; i++) {
                String name = string(b);
                long[] dims = new long[b.getInt()];
                for (int d = 0; d < dims.length; d++) {
                    dims[d] = b.getLong();
                }
                tensors.put(name, new TensorInfo(name, GgmlType.of(b.getInt()), dims, b.getLong()));
            }
        } catch (BufferUnderflowException e) {
            throw error("ends inside the header");
        }
        long alignment = metadata.containsKey("general.alignment") ? metadata.get("general.alignment").asLong() : 32;
        dataStart = (b.position() + alignment - 1) / alignment * alignment;
    }

    public static GgufReader open(Path file) throws IOException {
        return new GgufReader(file);
    }

    private IllegalArgumentException error(String what) {
        return new IllegalArgumentException(file + ": " + what);
    }

    public int version() {
        return version;
    }

    public Map<String, GgufValue> metadata() {
        return metadata;
    }

    public GgufValue get(String key) {
        GgufValue v = metadata.get(key);
        if (v == null) {
            throw error("metadata key '" + key + "' is missing");
        }
        return v;
    }

    public String string(String key) {
        return (String) get(key).value();
    }

    public Map<String, TensorInfo> tensors() {
        return tensors;
    }

    /** Byte offset of the data section (tensor offsets are relative to it). */
    public long dataStart() {
        return dataStart;
    }

    /** A tensor's values as fp32, in file order (dims[0] fastest). */
    public float[] values(String name) throws IOException {
        TensorInfo t = tensors.get(name);
        if (t == null) {
            throw error("tensor '" + name + "' is missing");
        }
        long bytes = t.type().bytes(t.elements());
        ByteBuffer b = ch.map(FileChannel.MapMode.READ_ONLY, dataStart + t.offset(), bytes).order(ByteOrder.LITTLE_ENDIAN);
        return t.type().decode(b, (int) t.elements());
    }

    private static String string(ByteBuffer b) {
        byte[] s = new byte[Math.toIntExact(b.getLong())];
        b.get(s);
        return new String(s, StandardCharsets.UTF_8);
    }

    private static GgufValue value(ByteBuffer b, GgufValue.Type type) {
        return switch (type) {
            case UINT8, INT8 -> new GgufValue(type, (long) (type == GgufValue.Type.UINT8 ? b.get() & 0xff : b.get()), null);
            case UINT16, INT16 -> new GgufValue(type, (long) (type == GgufValue.Type.UINT16 ? b.getShort() & 0xffff : b.getShort()), null);
            case UINT32 -> new GgufValue(type, b.getInt() & 0xffffffffL, null);
            case INT32 -> new GgufValue(type, (long) b.getInt(), null);
            case UINT64, INT64 -> new GgufValue(type, b.getLong(), null);
            case FLOAT32 -> new GgufValue(type, b.getFloat(), null);
            case FLOAT64 -> new GgufValue(type, b.getDouble(), null);
            case BOOL -> new GgufValue(type, b.get() != 0, null);
            case STRING -> new GgufValue(type, string(b), null);
            case ARRAY -> array(b);
        };
    }

    private static GgufValue array(ByteBuffer b) {
        GgufValue.Type et = GgufValue.Type.of(b.getInt());
        int n = Math.toIntExact(b.getLong());
        switch (et) {
            case INT32 -> {
                int[] a = new int[n];
                for (int i = 0; i < n; i++) {
                    a[i] = b.getInt();
                }
                return new GgufValue(GgufValue.Type.ARRAY, a, et);
            }
            case FLOAT32 -> {
                float[] a = new float[n];
                for (int i = 0; i < n; i++) {
                    a[i] = b.getFloat();
                }
                return new GgufValue(GgufValue.Type.ARRAY, a, et);
            }
            case STRING -> {
                String[] a = new String[n];
                for (int i = 0; i < n; i++) {
                    a[i] = string(b);
                }
                return new GgufValue(GgufValue.Type.ARRAY, a, et);
            }
            default -> {
                Object[] a = new Object[n];
                for (int i = 0; i < n; i++) {
                    a[i] = value(b, et).value();
                }
                return new GgufValue(GgufValue.Type.ARRAY, a, et);
            }
        }
    }

    @Override
    public void close() throws IOException {
        ch.close();
    }
}
