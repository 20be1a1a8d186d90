package dev.lopper.export.gguf;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a GGUF v3 file (ggml-org/ggml docs/gguf.md): header, metadata key/values, tensor infos, then each
 * tensor's data aligned to {@code general.alignment} (32). Tensors are declared with a {@link Source} that is
 * called once, at write time, in declaration order, so only one tensor is in memory at a time.
 *
 * <pre>{@code
 * GgufWriter w = new GgufWriter();
 * w.put("general.architecture", "llama");
 * w.put("llama.block_count", GgufValue.u32(8));
 * w.tensor("output_norm.weight", GgmlType.F32, () -> norm, 256);   // dims innermost first
 * w.write(Path.of("model.gguf"));
 * }</pre>
 */
public final class GgufWriter {
    public static final int MAGIC = 0x46554747; // "GGUF" little-endian
    public static final int VERSION = 3;
    public static final int ALIGNMENT = 32;

    /** Produces a tensor's values (row-major, innermost dimension last in memory order = dims[0] fastest). */
    @FunctionalInterface
    public interface Source {
        float[] values() throws IOException;
    }

    private record Tensor(String name, GgmlType type, long[] dims, Source source) {
        long elements() {
            long n = 1;
            for (long d : dims) {
                n *= d;
            }
            return n;
        }
    }

    private final Map<String, GgufValue> metadata = new LinkedHashMap<>();
    private final List<Tensor> tensors = new ArrayList<>();

    public GgufWriter() {
        put("general.alignment", GgufValue.u32(ALIGNMENT));
    }

    public void put(String key, GgufValue value) {
        metadata.put(key, value);
    }

    public void put(String key, String value) {
        metadata.put(key, GgufValue.string(value));
    }

    /** Declares a tensor; {@code dims} innermost first (ggml's ne[0], ne[1], ...). */
    public void tensor(String name, GgmlType type, Source source, long... dims) {
        if (dims[0] % type.blockSize() != 0) {
            throw new IllegalArgumentException("tensor '" + name + "': row length " + dims[0] + " is not a multiple of "
                    + type + "'s block size " + type.blockSize());
        }
        tensors.add(new Tensor(name, type, dims.clone(), source));
    }

    public void write(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE)) {
            Out out = new Out(ch);
            out.u32(MAGIC);
            out.u32(VERSION);
            out.u64(tensors.size());
            out.u64(metadata.size());
            for (Map.Entry<String, GgufValue> e : metadata.entrySet()) {
                out.string(e.getKey());
                e.getValue().write(out);
            }
            long offset = 0;
            for (Tensor t : tensors) {
                out.string(t.name);
                out.u32(t.dims.length);
                for (long d : t.dims) {
                    out.u64(d);
                }
                out.u32(t.type.id());
                out.u64(offset);
                offset = align(offset + t.type.bytes(t.elements()));
            }
            out.pad();
            for (Tensor t : tensors) {
                float[] v = t.source.values();
                if (v.length != t.elements()) {
                    throw new IllegalStateException("tensor '" + t.name + "': " + v.length + " values, expected " + t.elements());
                }
                ByteBuffer b = ByteBuffer.allocate((int) t.type.bytes(v.length)).order(ByteOrder.LITTLE_ENDIAN);
                t.type.encode(v, b);
                out.bytes(b.flip());
                out.pad();
            }
            out.flush();
        }
    }

    static long align(long n) {
        return (n + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }

    /** A little-endian buffered writer over a channel. */
    static final class Out {
        private final FileChannel ch;
        private final ByteBuffer buf = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
        private long position;

        Out(FileChannel ch) {
            this.ch = ch;
        }

        private void room(int n) throws IOException {
            if (buf.remaining() < n) {
                flush();
            }
        }

        void u8(int v) throws IOException {
            room(1);
            buf.put((byte) v);
            position++;
        }

        void u32(int v) throws IOException {
            room(4);
            buf.putInt(v);
            position += 4;
        }

        void u64(long v) throws IOException {
            room(8);
            buf.putLong(v);
            position += 8;
        }

        void f32(float v) throws IOException {
            room(4);
            buf.putFloat(v);
            position += 4;
        }

        void f64(double v) throws IOException {
            room(8);
            buf.putDouble(v);
            position += 8;
        }

        void string(String s) throws IOException {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            u64(b.length);
            bytes(ByteBuffer.wrap(b));
        }

        void bytes(ByteBuffer b) throws IOException {
            position += b.remaining();
            while (b.hasRemaining()) {
                if (!buf.hasRemaining()) {
                    flush();
                }
                int n = Math.min(buf.remaining(), b.remaining());
                ByteBuffer slice = b.slice();
                slice.limit(n);
                buf.put(slice);
                b.position(b.position() + n);
            }
        }

        void pad() throws IOException {
            while (position % ALIGNMENT != 0) {
                u8(0);
            }
        }

        void flush() throws IOException {
            buf.flip();
            while (buf.hasRemaining()) {
                ch.write(buf);
            }
            buf.clear();
        }
    }
}
