package dev.lopper.pruning.plan;

import dev.lopper.model.ModelFormatException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;

/**
 * A cheap identity of a model directory: SHA-256 over config.json, every safetensors header (names, dtypes,
 * shapes, offsets) and the first and last {@value #SAMPLE} bytes of each file's data (so that two fine-tunes of
 * one architecture differ), not all weight bytes, so it takes milliseconds even for a 70B checkpoint. A plan
 * records it so that it is not applied to a different model by mistake.
 */
public final class ModelHash {
    /** Data bytes sampled at each end of every safetensors file. */
    static final int SAMPLE = 64 * 1024;

    private ModelHash() {
    }

    /** "sha256:" + hex digest of {@code dir}/config.json and its *.safetensors headers (sorted by file name). */
    public static String of(Path dir) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(Files.readAllBytes(dir.resolve("config.json")));
            List<Path> files;
            try (Stream<Path> s = Files.list(dir)) {
                files = s.filter(p -> p.getFileName().toString().endsWith(".safetensors")).sorted().toList();
            }
            for (Path f : files) {
                md.update(f.getFileName().toString().getBytes(java.nio.charset.StandardCharsets.UTF_8));
                try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ)) {
                    long size = ch.size();
                    ByteBuffer len = read(ch, 0, 8);
                    md.update(len.duplicate());
                    long n = len.remaining() == 8 ? len.order(ByteOrder.LITTLE_ENDIAN).getLong(0) : 0;
                    long dataStart = Math.min(size, 8 + Math.min(Math.max(n, 0), 100_000_000));
                    md.update(read(ch, 8, (int) (dataStart - 8)));
                    md.update(read(ch, dataStart, (int) Math.min(SAMPLE, size - dataStart)));
                    long tail = Math.max(dataStart, size - SAMPLE);
                    md.update(read(ch, tail, (int) (size - tail)));
                }
            }
            return "sha256:" + HexFormat.of().formatHex(md.digest());
        } catch (IOException e) {
            throw ModelFormatException.file(dir, "cannot hash the model: " + e.getMessage());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static ByteBuffer read(FileChannel ch, long pos, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(Math.max(n, 0));
        while (b.hasRemaining()) {
            if (ch.read(b, pos + b.position()) < 0) {
                break;
            }
        }
        return b.flip();
    }
}
