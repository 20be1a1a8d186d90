package dev.lopper.model.io;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.UUID;

/**
 * Files that appear whole or not at all (the single-file twin of {@link AtomicDirectory}): written under a temporary
 * name beside the target, then renamed into place, so a reader (a resumed job, {@code sweep --status}, another Slurm
 * task) never sees half a file. A failed write leaves no temporary behind.
 *
 * <pre>{@code
 * AtomicFile.writeString(dir.resolve("job.json"), json);
 * AtomicFile.write(dir.resolve("curve.png"), tmp -> ChartUtils.saveChartAsPNG(tmp.toFile(), chart, 800, 500));
 * }</pre>
 */
public final class AtomicFile {
    private AtomicFile() {
    }

    /** Writes the content of a file to the path it is given. */
    @FunctionalInterface
    public interface Content {
        void writeTo(Path tmp) throws IOException;
    }

    /** Writes {@code file} through {@code content} beside itself, then renames it into place. */
    public static void write(Path file, Content content) throws IOException {
        Path abs = file.toAbsolutePath();
        // not createTempFile: its 0600 would keep results from the group on a shared filesystem; the umask applies
        Path tmp = abs.resolveSibling("." + abs.getFileName() + "." + UUID.randomUUID() + ".tmp");
        try {
            content.writeTo(tmp);
            Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** {@link #write} of a UTF-8 text. */
    public static void writeString(Path file, String text) throws IOException {
        write(file, tmp -> Files.writeString(tmp, text, StandardCharsets.UTF_8));
    }
}
