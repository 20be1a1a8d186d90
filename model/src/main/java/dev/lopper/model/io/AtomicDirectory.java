package dev.lopper.model.io;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * Directories that appear whole or not at all: build under a temporary name beside the target
 * ({@link #createTemp}), then {@link #replace} it into place. Every writer of model directories and exports uses
 * this, so a failed write never leaves a half-written output.
 */
public final class AtomicDirectory {
    private AtomicDirectory() {
    }

    /** A fresh temporary directory in the same folder as {@code target} (so the final move is a rename). */
    public static Path createTemp(Path target) throws IOException {
        Path abs = target.toAbsolutePath();
        Files.createDirectories(abs.getParent());
        return Files.createTempDirectory(abs.getParent(), "." + abs.getFileName() + ".tmp-");
    }

    /**
     * Moves {@code fresh} to {@code target}; an existing target is moved aside first and deleted after. An existing
     * target is replaced only when it is empty or Lopper wrote it ({@link OutputGuard#isLopperOutput}): whatever
     * checks a caller made or skipped, this never deletes a user's directory.
     */
    public static void replace(Path fresh, Path target) throws IOException {
        Path old = null;
        if (Files.exists(target, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            if (!Files.isDirectory(target, java.nio.file.LinkOption.NOFOLLOW_LINKS)
                    || !(OutputGuard.isEmpty(target) || OutputGuard.isLopperOutput(target))) {
                throw new IllegalArgumentException(target + ": exists and was not written by Lopper (no " + OutputGuard.MARKER
                        + "); refusing to replace it");
            }
            old = target.resolveSibling("." + target.getFileName() + ".old-" + System.nanoTime());
            Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
        }
        try {
            Files.move(fresh, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            if (old != null) {
                Files.move(old, target, StandardCopyOption.ATOMIC_MOVE);
            }
            throw e;
        }
        if (old != null) {
            deleteTree(old);
        }
    }

    /** Deletes a file or directory tree; nothing when absent. */
    public static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) {
            return;
        }
        try (Stream<Path> s = Files.walk(p)) {
            s.sorted(Comparator.reverseOrder()).forEach(x -> {
                try {
                    Files.delete(x);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
        }
    }
}
