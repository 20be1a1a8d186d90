package dev.lopper.model.io;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * Directories that appear whole or not at all: build under a temporary name beside the target
 * ({@link #createTemp}), then {@link #replace} it into place. Every writer of model directories and exports uses
 * this, so a failed write never leaves a half-written output.
 */
public final class AtomicDirectory {
    private AtomicDirectory() {
    }

    /**
     * A fresh temporary directory in the same folder as {@code target} (so the final move is a rename), named
     * {@code .NAME.tmp-PID-N}. Temporaries that a killed run left beside the target (their process no longer runs)
     * are removed first, with a line on stderr. Created with {@link Files#createDirectory}, so the user's umask
     * applies (not the 0700 of {@code createTempDirectory}).
     */
    public static Path createTemp(Path target) throws IOException {
        Path abs = target.toAbsolutePath();
        Files.createDirectories(abs.getParent());
        removeStale(abs);
        for (int attempt = 0; ; attempt++) {
            Path tmp = abs.resolveSibling(tempName(abs, "tmp") + "-" + attempt);
            try {
                return Files.createDirectory(tmp);
            } catch (java.nio.file.FileAlreadyExistsException e) {
                if (attempt > 1000) {
                    throw e;
                }
            }
        }
    }

    /** {@code .NAME.KIND-PID-NANOS}: the pid tells a later run whether the writer is still alive. */
    private static String tempName(Path target, String kind) {
        return "." + target.getFileName() + "." + kind + "-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
    }

    /** Removes {@code .NAME.tmp-PID-*} and {@code .NAME.old-PID-*} beside {@code target} whose process has ended. */
    static void removeStale(Path target) throws IOException {
        java.util.regex.Pattern mine = java.util.regex.Pattern.compile(
                java.util.regex.Pattern.quote("." + target.getFileName() + ".") + "(?:tmp|old)-(\\d+)-.*");
        List<Path> stale = new java.util.ArrayList<>();
        try (Stream<Path> s = Files.list(target.getParent())) {
            for (Path p : s.toList()) {
                java.util.regex.Matcher m = mine.matcher(p.getFileName().toString());
                if (m.matches() && ProcessHandle.of(Long.parseLong(m.group(1))).isEmpty()) {
                    stale.add(p);
                }
            }
        } catch (NumberFormatException e) {
            return; // not a pid: not ours
        }
        for (Path p : stale) {
            System.err.println("warning: removing " + p + ", left by an earlier run that was killed");
            deleteTree(p);
        }
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
            String foreign = OutputGuard.foreignEntry(target);
            if (foreign != null) {
                throw new IllegalArgumentException(target + ": holds " + foreign + ", which Lopper did not write; refusing to replace it");
            }
            old = target.resolveSibling(tempName(target, "old"));
            Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
        }
        OutputGuard.listFiles(fresh); // what a later --overwrite may replace
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
