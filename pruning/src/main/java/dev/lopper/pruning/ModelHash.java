package dev.lopper.pruning;

import dev.lopper.model.ModelFormatException;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;

/**
 * A cheap identity of a model directory: SHA-256 over config.json and every safetensors header (names, dtypes,
 * shapes, offsets), not the weight bytes, so it takes milliseconds even for a 70B checkpoint. A plan records it
 * so that it is not applied to a different model by mistake.
 */
public final class ModelHash {
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
                try (InputStream in = Files.newInputStream(f)) {
                    byte[] len = in.readNBytes(8);
                    md.update(len);
                    if (len.length == 8) {
                        long n = ByteBuffer.wrap(len).order(ByteOrder.LITTLE_ENDIAN).getLong();
                        md.update(in.readNBytes((int) Math.min(Math.max(n, 0), 100_000_000)));
                    }
                }
            }
            return "sha256:" + HexFormat.of().formatHex(md.digest());
        } catch (IOException e) {
            throw ModelFormatException.file(dir, "cannot hash the model: " + e.getMessage());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
