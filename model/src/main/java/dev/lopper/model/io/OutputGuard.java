package dev.lopper.model.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The one rule every writer follows: <b>never delete or replace what Lopper did not create</b>.
 *
 * <ul>
 *   <li>An output equal to, inside or above an input is refused (writing it would replace or delete the input).</li>
 *   <li>An existing non-empty output directory is refused unless the caller allows overwriting, and even then only
 *       when it carries Lopper's marker ({@value #MARKER}, written into every directory Lopper creates; a
 *       {@value #LEGACY_MARKER} written by earlier versions counts too).</li>
 *   <li>An existing output file is refused unless overwriting is allowed and it is one Lopper wrote (a pruning
 *       plan, recognised by its {@code "format"}).</li>
 * </ul>
 *
 * <pre>{@code
 * OutputGuard.checkDirectory(out, overwrite, "--out", modelDir);   // before any work
 * ...
 * OutputGuard.writeMarker(tmp, "prune");                            // inside the directory being built
 * AtomicDirectory.replace(tmp, out);                                 // re-checks the marker before replacing
 * }</pre>
 */
public final class OutputGuard {
    /** Written into every directory Lopper creates; its presence allows {@code --overwrite} to replace it. */
    public static final String MARKER = "lopper_output.json";
    /** The pruning plan that prune outputs of earlier versions carried: also proof that Lopper wrote the directory. */
    public static final String LEGACY_MARKER = "lopper_plan.json";

    private static final ObjectMapper JSON = new ObjectMapper();

    private OutputGuard() {
    }

    /**
     * Checks, before any work, that a directory may be written at {@code out}.
     *
     * @param option the option's name for messages, e.g. {@code "--out"}
     * @param inputs the command's inputs (model directories, plan files, data); null entries are ignored
     * @throws IllegalArgumentException with a one-line message when writing there could destroy something
     */
    public static void checkDirectory(Path out, boolean overwrite, String option, Path... inputs) throws IOException {
        checkNotOverlapping(out, option, inputs);
        checkWritable(out, option);
        if (!Files.exists(out, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (Files.isSymbolicLink(out)) {
            throw new IllegalArgumentException(option + " " + out + ": is a symbolic link; expected a new directory or one Lopper wrote");
        }
        if (!Files.isDirectory(out)) {
            throw new IllegalArgumentException(option + " " + out + ": is an existing file; expected a directory to write into");
        }
        if (isEmpty(out)) {
            return;
        }
        if (!isLopperOutput(out)) {
            throw new IllegalArgumentException(option + " " + out + ": exists and holds files Lopper did not write (no " + MARKER
                    + "); choose a new or empty directory");
        }
        if (!overwrite) {
            throw new IllegalArgumentException(option + " " + out + ": exists (written by Lopper earlier); pass --overwrite to replace it, or choose a new directory");
        }
        String foreign = foreignEntry(out);
        if (foreign != null) {
            throw new IllegalArgumentException(option + " " + out + ": holds " + foreign + ", which Lopper did not write; --overwrite replaces "
                    + "only Lopper's files: move it away or choose a new directory");
        }
    }

    /** Files Lopper adds to a directory after writing it (a training job's curve), besides those its marker lists. */
    private static final java.util.Set<String> ADDED_LATER = java.util.Set.of(MARKER, LEGACY_MARKER, "curve.csv", "curve.png");

    /**
     * The first entry of a Lopper directory that its marker does not list (a user's file put there later), or null.
     * Markers without a list (older ones, directories that grow: sweeps, job folders) list nothing and allow all.
     */
    public static String foreignEntry(Path dir) throws IOException {
        Path marker = dir.resolve(MARKER);
        if (!Files.isRegularFile(marker)) {
            return null;
        }
        com.fasterxml.jackson.databind.JsonNode files;
        try {
            files = JSON.readTree(marker.toFile()).get("files");
        } catch (IOException e) {
            return null;
        }
        if (files == null || !files.isArray()) {
            return null;
        }
        java.util.Set<String> listed = new java.util.HashSet<>(ADDED_LATER);
        files.forEach(f -> listed.add(f.asText()));
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).filter(n -> !listed.contains(n)).sorted().findFirst().orElse(null);
        }
    }

    /**
     * Records in {@code dir}'s marker the entries it holds now (just before it is moved into place), so that a later
     * {@code --overwrite} replaces only those ({@link #foreignEntry}). Directories that grow after (kinds "job" and
     * "sweep") are left unlisted.
     */
    public static void listFiles(Path dir) throws IOException {
        Path marker = dir.resolve(MARKER);
        if (!Files.isRegularFile(marker)) {
            return;
        }
        com.fasterxml.jackson.databind.node.ObjectNode m;
        try {
            m = (com.fasterxml.jackson.databind.node.ObjectNode) JSON.readTree(marker.toFile());
        } catch (IOException | ClassCastException e) {
            return;
        }
        String kind = m.path("kind").asText("");
        if (kind.equals("job") || kind.equals("sweep")) {
            return;
        }
        com.fasterxml.jackson.databind.node.ArrayNode list = m.putArray("files");
        try (Stream<Path> s = Files.list(dir)) {
            s.map(p -> p.getFileName().toString()).sorted().forEach(list::add);
        }
        JSON.writerWithDefaultPrettyPrinter().writeValue(marker.toFile(), m);
    }

    /**
     * Checks, before any work, that a file may be written at {@code out} (a plan, a report).
     *
     * @param lopperFormatPrefix the {@code "format"} value prefix that marks a file Lopper wrote, e.g. {@code "lopper-plan/"}
     */
    public static void checkFile(Path out, boolean overwrite, String option, String lopperFormatPrefix, Path... inputs) throws IOException {
        checkNotOverlapping(out, option, inputs);
        checkWritable(out, option);
        if (!Files.exists(out, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (Files.isDirectory(out)) {
            throw new IllegalArgumentException(option + " " + out + ": is a directory; expected a file name");
        }
        if (!hasFormat(out, lopperFormatPrefix)) {
            throw new IllegalArgumentException(option + " " + out + ": exists and is not a file Lopper wrote; choose another file name");
        }
        if (!overwrite) {
            throw new IllegalArgumentException(option + " " + out + ": exists (written by Lopper earlier); pass --overwrite to replace it, or choose another name");
        }
    }

    /** Refuses an output equal to, inside or above any input. */
    public static void checkNotOverlapping(Path out, String option, Path... inputs) throws IOException {
        Path o = canonical(out);
        for (Path in : inputs) {
            if (in == null) {
                continue;
            }
            Path i = canonical(in);
            if (o.equals(i)) {
                throw new IllegalArgumentException(option + " " + out + ": is the input " + in + "; choose another path");
            }
            if (o.startsWith(i)) {
                throw new IllegalArgumentException(option + " " + out + ": is inside the input " + in + "; choose a path outside it");
            }
            if (i.startsWith(o)) {
                throw new IllegalArgumentException(option + " " + out + ": contains the input " + in
                        + " (writing there would replace it); choose a path outside it");
            }
        }
    }

    /**
     * Refuses, before any work, an output whose nearest existing ancestor is not a writable directory (the output
     * is built beside the target, so that is where the bytes go).
     */
    public static void checkWritable(Path out, String option) {
        Path existing = out.toAbsolutePath().normalize().getParent();
        while (existing != null && !Files.exists(existing)) {
            existing = existing.getParent();
        }
        if (existing == null) {
            return;
        }
        if (!Files.isDirectory(existing)) {
            throw new IllegalArgumentException(option + " " + out + ": " + existing + " is a file; expected a directory to write into");
        }
        if (!Files.isWritable(existing)) {
            throw new IllegalArgumentException(option + " " + out + ": " + existing + " is not writable");
        }
    }

    /**
     * Refuses an output when the file system that will hold it has less usable space than {@code expectedBytes}
     * (plus 1% headroom), before any work.
     */
    public static void checkFreeSpace(Path out, long expectedBytes, String option) throws IOException {
        Path existing = out.toAbsolutePath().normalize();
        while (existing != null && !Files.exists(existing)) {
            existing = existing.getParent();
        }
        if (existing == null) {
            return;
        }
        long usable = Files.getFileStore(existing).getUsableSpace();
        long needed = expectedBytes + expectedBytes / 100;
        if (usable < needed) {
            throw new IllegalArgumentException(String.format(java.util.Locale.ROOT,
                    "%s %s: needs about %.1f MiB, but only %.1f MiB are free there", option, out, needed / 1048576.0, usable / 1048576.0));
        }
    }

    /** Whether {@code dir} is a directory that Lopper created (it carries the marker). */
    public static boolean isLopperOutput(Path dir) {
        return Files.isRegularFile(dir.resolve(MARKER)) || Files.isRegularFile(dir.resolve(LEGACY_MARKER));
    }

    /** Whether {@code dir} is an empty directory. */
    public static boolean isEmpty(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.findAny().isEmpty();
        }
    }

    /** Writes the marker into a directory being built, saying what wrote it. */
    public static void writeMarker(Path dir, String kind) throws IOException {
        Map<String, Object> m = Map.of("written_by", "lopper", "kind", kind, "lopper_version", dev.lopper.model.LopperVersion.get(),
                "created", Instant.now().toString(),
                "note", "Lopper replaces this directory only with --overwrite, and only while this file is here.");
        JSON.writerWithDefaultPrettyPrinter().writeValue(dir.resolve(MARKER).toFile(), new java.util.TreeMap<>(m));
    }

    /** Names of the marker files (writers that list their outputs may leave them out). */
    public static List<String> markers() {
        return List.of(MARKER, LEGACY_MARKER);
    }

    private static boolean hasFormat(Path file, String prefix) {
        try {
            JsonNode n = JSON.readTree(file.toFile());
            return n != null && n.path("format").asText("").startsWith(prefix);
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    /** The real path of {@code p}, or of its nearest existing ancestor joined with the rest (p need not exist). */
    static Path canonical(Path p) throws IOException {
        Path abs = p.toAbsolutePath().normalize();
        Path existing = abs;
        Path rest = null;
        while (existing != null && !Files.exists(existing)) {
            Path name = existing.getFileName();
            rest = rest == null ? name : name.resolve(rest);
            existing = existing.getParent();
        }
        if (existing == null) {
            return abs;
        }
        Path real = existing.toRealPath();
        return rest == null ? real : real.resolve(rest);
    }
}
