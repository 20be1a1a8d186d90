package dev.lopper.model.io;

import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * Writes one {@code .safetensors} file. Tensor bytes are pulled one entry at a time, so a model is written
 * without holding all of it in memory; the file appears atomically (temp file in the same folder, then move).
 */
public final class SafeTensorsWriter {
    /**
     * One tensor to write; {@code data} is called once, when its turn comes, and must write exactly
     * {@link #byteLength} little-endian bytes at the channel's position.
     */
    public record Entry(String name, DataType dtype, Shape shape, Data data) {
        /** An entry whose bytes come as one buffer ({@code bytes} is called once, when its turn comes). */
        public Entry(String name, DataType dtype, Shape shape, Supplier<ByteBuffer> bytes) {
            this(name, dtype, shape, out -> writeFully(out, bytes.get()));
        }

        public long byteLength() {
            return shape.size() * dtype.getNumOfBytes();
        }
    }

    /** Writes one tensor's data to the file; streaming writers (slices, byte-for-byte copies) need no buffer of it. */
    @FunctionalInterface
    public interface Data {
        void writeTo(FileChannel out) throws IOException;
    }

    private SafeTensorsWriter() {
    }

    public static void write(Path file, List<Entry> entries, Map<String, String> metadata) throws IOException {
        ObjectMapper json = new ObjectMapper();
        ObjectNode header = json.createObjectNode();
        if (metadata != null && !metadata.isEmpty()) {
            ObjectNode meta = header.putObject("__metadata__");
            metadata.forEach(meta::put);
        }
        long offset = 0;
        for (Entry e : entries) {
            ObjectNode t = header.putObject(e.name());
            t.put("dtype", SafeTensors.name(e.dtype()));
            var shape = t.putArray("shape");
            for (long d : e.shape().getShape()) {
                shape.add(d);
            }
            t.putArray("data_offsets").add(offset).add(offset + e.byteLength());
            offset += e.byteLength();
        }
        byte[] headerBytes = json.writeValueAsBytes(header);
        int padded = (headerBytes.length + 7) / 8 * 8; // data stays 8-byte aligned, as the reference writer does
        ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(padded).put(headerBytes);
        while (head.hasRemaining()) {
            head.put((byte) ' ');
        }
        head.flip();
        Files.createDirectories(file.toAbsolutePath().getParent());
        AtomicFile.write(file, tmp -> {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                writeFully(ch, head);
                for (Entry e : entries) {
                    long before = ch.position();
                    e.data().writeTo(ch);
                    long wrote = ch.position() - before;
                    if (wrote != e.byteLength()) {
                        throw new IllegalStateException("tensor '" + e.name() + "' gave " + wrote + " bytes, expected " + e.byteLength());
                    }
                }
                ch.force(true);
            }
        });
    }

    /** Writes all of {@code b} at the channel's position. */
    public static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

}
