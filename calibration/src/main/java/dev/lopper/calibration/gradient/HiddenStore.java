package dev.lopper.calibration.gradient;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.io.DirectBuffers;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HashMap;
import java.util.Map;

/**
 * The hidden states at each layer boundary (boundary {@code i} = layer {@code i}'s input), per chunk of windows,
 * kept by the forward sweep for the backward pass to recompute each layer from. In memory (a manager per
 * boundary) or, with a spill directory, in one raw fp32 file per boundary (native byte order), so only the chunk
 * being worked on is resident. Boundaries are dropped as soon as the backward pass has used them.
 */
final class HiddenStore implements AutoCloseable {
    private final NDManager root;
    private final Path dir;
    private final long chunkBytes;
    private final Map<Integer, NDManager> memory = new HashMap<>();
    private final Map<Long, NDArray> arrays = new HashMap<>();
    private final Map<Integer, FileChannel> files = new HashMap<>();

    /**
     * @param dir spill directory, or null to keep everything in memory
     * @param chunkBytes bytes of a full chunk (the last may be shorter): where chunk c starts in a file
     */
    HiddenStore(NDManager root, Path dir, long chunkBytes) {
        this.root = root;
        this.dir = dir;
        this.chunkBytes = chunkBytes;
    }

    private static long key(int boundary, int chunk) {
        return ((long) boundary << 32) | chunk;
    }

    /** Stores {@code x} (fp32) as chunk {@code chunk} of boundary {@code boundary}; takes ownership of x. */
    void put(int boundary, int chunk, NDArray x) {
        if (dir == null) {
            x.attach(memory.computeIfAbsent(boundary, b -> root.newSubManager()));
            arrays.put(key(boundary, chunk), x);
            return;
        }
        try {
            FileChannel ch = files.get(boundary);
            if (ch == null) {
                Files.createDirectories(dir);
                ch = FileChannel.open(dir.resolve("boundary-" + boundary + ".f32"), StandardOpenOption.CREATE,
                        StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.READ, StandardOpenOption.WRITE);
                files.put(boundary, ch);
            }
            ByteBuffer b = x.toByteBuffer();
            long pos = chunk * chunkBytes;
            while (b.hasRemaining()) {
                pos += ch.write(b, pos);
            }
            x.close();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot spill hidden states to " + dir, e);
        }
    }

    /** A fresh copy of chunk {@code chunk} of boundary {@code boundary}, shaped {@code shape}, owned by {@code into}. */
    NDArray get(int boundary, int chunk, Shape shape, NDManager into) {
        if (dir == null) {
            NDArray a = arrays.get(key(boundary, chunk)).duplicate();
            a.attach(into);
            return a;
        }
        ByteBuffer b = ByteBuffer.allocateDirect((int) (shape.size() * 4)).order(ByteOrder.nativeOrder());
        try {
            FileChannel ch = files.get(boundary);
            long pos = chunk * chunkBytes;
            while (b.hasRemaining()) {
                int r = ch.read(b, pos);
                if (r < 0) {
                    throw new IOException("short read");
                }
                pos += r;
            }
            b.flip();
            // DJL wraps a direct buffer without copying: copy, then free the buffer at once
            try (NDArray wrapped = into.create(b, shape, DataType.FLOAT32)) {
                return wrapped.duplicate();
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read spilled hidden states from " + dir, e);
        } finally {
            DirectBuffers.free(b);
        }
    }

    /** Releases boundary {@code boundary} (its arrays or its file). */
    void drop(int boundary) {
        NDManager m = memory.remove(boundary);
        if (m != null) {
            arrays.keySet().removeIf(k -> (int) (k >>> 32) == boundary);
            m.close();
        }
        FileChannel ch = files.remove(boundary);
        if (ch != null) {
            try {
                ch.close();
                Files.deleteIfExists(dir.resolve("boundary-" + boundary + ".f32"));
            } catch (IOException e) {
                throw new UncheckedIOException("cannot remove spilled hidden states in " + dir, e);
            }
        }
    }

    @Override
    public void close() {
        for (Integer b : new java.util.ArrayList<>(memory.keySet())) {
            drop(b);
        }
        for (Integer b : new java.util.ArrayList<>(files.keySet())) {
            drop(b);
        }
    }
}
