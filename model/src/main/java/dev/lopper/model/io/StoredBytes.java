package dev.lopper.model.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.Path;

/**
 * A tensor's bytes exactly as stored in a file (little-endian, its stored dtype), read by range through the
 * file's channel instead of a mapping: what is read is copied into the caller's buffer or straight into another
 * channel, so no page of the checkpoint stays in this process's resident set afterwards. Used to copy untouched
 * tensors byte for byte, to slice pruned ones without converting them, and to gather embedding rows.
 *
 * <pre>{@code
 * StoredBytes s = checkpoint.stored("model.embed_tokens.weight");
 * s.transferTo(0, s.size(), outChannel);       // a byte-for-byte copy, no mapping
 * }</pre>
 */
public final class StoredBytes {
    private final Path file;
    private final FileChannel channel;
    private final long begin;
    private final long size;

    StoredBytes(Path file, FileChannel channel, long begin, long size) {
        this.file = file;
        this.channel = channel;
        this.begin = begin;
        this.size = size;
    }

    public long size() {
        return size;
    }

    /** Fills {@code dst} (all of its remaining bytes) from byte {@code offset} of the tensor. */
    public void read(long offset, ByteBuffer dst) throws IOException {
        if (offset < 0 || offset + dst.remaining() > size) {
            throw new IndexOutOfBoundsException("read of " + dst.remaining() + " bytes at " + offset + " of a " + size + "-byte tensor in " + file);
        }
        long pos = begin + offset;
        while (dst.hasRemaining()) {
            int n = channel.read(dst, pos);
            if (n < 0) {
                throw new IOException(file + ": unexpected end of file");
            }
            pos += n;
        }
    }

    /** Copies {@code length} bytes from byte {@code offset} of the tensor into {@code out} (the kernel copies). */
    public void transferTo(long offset, long length, WritableByteChannel out) throws IOException {
        if (offset < 0 || offset + length > size) {
            throw new IndexOutOfBoundsException("copy of " + length + " bytes at " + offset + " of a " + size + "-byte tensor in " + file);
        }
        long pos = begin + offset;
        long end = pos + length;
        while (pos < end) {
            long n = channel.transferTo(pos, end - pos, out);
            if (n <= 0) {
                // transferTo may refuse (0) on some channels: fall back to a bounded copy through a small buffer
                ByteBuffer b = ByteBuffer.allocate((int) Math.min(1 << 20, end - pos));
                read(pos - begin, b);
                b.flip();
                while (b.hasRemaining()) {
                    out.write(b);
                }
                n = b.limit();
            }
            pos += n;
        }
    }
}
