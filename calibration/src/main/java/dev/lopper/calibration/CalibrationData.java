package dev.lopper.calibration;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.io.AtomicFile;

import java.io.BufferedReader;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;

/**
 * Calibration windows: {@code samples} sequences of {@code seqLen} token ids each, cut at seeded random offsets
 * from a text corpus. The corpus is a plain text file, a JSONL file (one document per line, text in a field,
 * default {@code "text"}) or a directory of text files (read recursively in name order).
 *
 * <p>Sampling follows FLAP's wikitext2 loader (the one CFSP reuses): the whole corpus is tokenized once as one
 * stream (documents joined, no BOS) and each window starts at a uniformly random offset. Wanda's C4 loader
 * instead draws a random document longer than the window; with a single long text file both are the same.
 * Java's {@link SplittableRandom} replaces Python's {@code random}, so the offsets differ from the papers' for
 * the same seed, but a seed always gives the same windows here.
 *
 * <p>The windows are cached in {@code cacheDir} under a key that hashes the corpus bytes, the tokenizer file,
 * {@code samples}, {@code seqLen} and {@code seed}: a second run skips tokenization.
 *
 * @param windows token ids [samples][seqLen]
 * @param key the cache key (hex SHA-256), or a description for windows made by hand
 */
public record CalibrationData(long[][] windows, String key) {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int MAGIC = 0x4C50434C; // "LPCL"
    /** Text is tokenized in pieces of about this many characters, cut at line ends (tokenizers are slow on huge strings). */
    private static final int PIECE_CHARS = 1 << 16;

    public CalibrationData {
        if (windows.length == 0) {
            throw new IllegalArgumentException("calibration needs at least one window");
        }
        int len = windows[0].length;
        for (long[] w : windows) {
            if (w.length != len || len == 0) {
                throw new IllegalArgumentException("calibration windows must all have the same non-zero length");
            }
        }
    }

    /** Windows given directly (tests). */
    public static CalibrationData of(long[][] windows) {
        return new CalibrationData(windows, "inline");
    }

    public int samples() {
        return windows.length;
    }

    public int seqLen() {
        return windows[0].length;
    }

    public long tokens() {
        return (long) samples() * seqLen();
    }

    /**
     * Loads (or reads from cache) {@code samples} windows of {@code seqLen} tokens from {@code source}.
     *
     * @param textField the JSONL field holding the text
     * @param cacheDir where windows are cached; null disables the cache
     */
    public static CalibrationData load(Path source, Tokenizer tokenizer, int samples, int seqLen, long seed,
                                       String textField, Path cacheDir) {
        if (samples <= 0) {
            throw new IllegalArgumentException("--samples " + samples + ": expected a positive number of windows");
        }
        if (seqLen < 2) {
            throw new IllegalArgumentException("--seq-len " + seqLen + ": expected at least 2 tokens");
        }
        if (!Files.exists(source)) {
            throw new IllegalArgumentException("--calib " + source + ": does not exist (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        try {
            List<Path> files = files(source, "--calib");
            String key = cacheKey(files, source, tokenizer.file(), samples, seqLen, seed, textField);
            Path cached = cacheDir == null ? null : cacheDir.resolve("calib-" + key + ".bin");
            if (cached != null && Files.exists(cached)) {
                long[][] w = read(cached, samples, seqLen);
                if (w != null) {
                    return new CalibrationData(w, key);
                }
            }
            long[] stream = tokenize(files, tokenizer, textField, "--calib");
            if (stream.length < seqLen + 1) {
                throw new IllegalArgumentException("--calib " + source + ": has " + stream.length + " tokens; --seq-len " + seqLen
                        + " needs at least " + (seqLen + 1));
            }
            long[][] windows = sample(stream, samples, seqLen, seed);
            if (cached != null) {
                write(cached, windows);
            }
            return new CalibrationData(windows, key);
        } catch (IOException e) {
            throw new UncheckedIOException("--calib " + source + ": " + e.getMessage(), e);
        }
    }

    /**
     * The whole corpus at {@code source} (text, JSONL or a directory, as {@link #load}) as one token stream, no
     * special tokens: what training data (recovery) cuts its windows from.
     *
     * @param option the command-line option naming the source, for messages (e.g. {@code "--data"})
     */
    public static long[] tokenStream(Path source, Tokenizer tokenizer, String textField, String option) {
        if (!Files.exists(source)) {
            throw new IllegalArgumentException(option + " " + source + ": does not exist (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        try {
            return tokenize(files(source, option), tokenizer, textField, option);
        } catch (IOException e) {
            throw new UncheckedIOException(option + " " + source + ": " + e.getMessage(), e);
        }
    }

    /** {@code samples} windows at uniformly random offsets in [0, stream.length - seqLen]. */
    public static long[][] sample(long[] stream, int samples, int seqLen, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        long[][] out = new long[samples][];
        for (int i = 0; i < samples; i++) {
            int start = rnd.nextInt(stream.length - seqLen + 1);
            out[i] = java.util.Arrays.copyOfRange(stream, start, start + seqLen);
        }
        return out;
    }

    private static List<Path> files(Path source, String option) throws IOException {
        if (!Files.isDirectory(source)) {
            return List.of(source);
        }
        try (Stream<Path> s = Files.walk(source)) {
            List<Path> files = s.filter(Files::isRegularFile).filter(p -> !p.getFileName().toString().startsWith("."))
                    .sorted().toList();
            if (files.isEmpty()) {
                throw new IllegalArgumentException(option + " " + source + ": the directory has no files");
            }
            return files;
        }
    }

    private static boolean isJsonl(Path p) {
        String n = p.getFileName().toString().toLowerCase();
        return n.endsWith(".jsonl") || n.endsWith(".ndjson");
    }

    /** The whole corpus as one token stream (no special tokens). */
    private static long[] tokenize(List<Path> files, Tokenizer tokenizer, String textField, String option) throws IOException {
        LongBuffer out = new LongBuffer();
        for (Path f : files) {
            try {
                if (isJsonl(f)) {
                    try (BufferedReader r = Files.newBufferedReader(f, StandardCharsets.UTF_8)) {
                        String line;
                        int n = 0;
                        while ((line = r.readLine()) != null) {
                            n++;
                            if (line.isBlank()) {
                                continue;
                            }
                            JsonNode node;
                            try {
                                node = JSON.readTree(line);
                            } catch (IOException e) {
                                throw new IllegalArgumentException(option + " " + f + ": line " + n + " is not valid JSON");
                            }
                            JsonNode text = node == null ? null : node.get(textField);
                            if (text == null || !text.isTextual()) {
                                throw new IllegalArgumentException(option + " " + f + ": line " + n + " has no string field '" + textField
                                        + "' (found fields " + (node == null ? "none" : iterable(node)) + ")");
                            }
                            tokenizeText(text.textValue() + "\n\n", tokenizer, out);
                        }
                    }
                } else {
                    tokenizeText(Files.readString(f, StandardCharsets.UTF_8), tokenizer, out);
                }
            } catch (java.nio.charset.CharacterCodingException e) {
                throw new IllegalArgumentException(option + " " + f + ": is not UTF-8 text (a binary file?); expected a .txt file, "
                        + "a .jsonl file or a directory of text files");
            }
        }
        return out.toArray();
    }

    private static String iterable(JsonNode node) {
        List<String> names = new ArrayList<>();
        node.fieldNames().forEachRemaining(names::add);
        return names.toString();
    }

    /** Tokenizes {@code text} in line-aligned pieces of about {@link #PIECE_CHARS} characters. */
    private static void tokenizeText(String text, Tokenizer tokenizer, LongBuffer out) {
        int pos = 0;
        while (pos < text.length()) {
            int end = Math.min(text.length(), pos + PIECE_CHARS);
            if (end < text.length()) {
                int nl = text.indexOf('\n', end);
                end = nl < 0 ? text.length() : nl + 1;
            }
            out.add(tokenizer.encodePlain(text.substring(pos, end)));
            pos = end;
        }
    }

    private static String cacheKey(List<Path> files, Path root, Path tokenizerFile, int samples, int seqLen, long seed,
                                   String textField) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        byte[] buf = new byte[1 << 16];
        for (Path f : files) {
            md.update(root.relativize(f).toString().getBytes(StandardCharsets.UTF_8));
            md.update((byte) 0);
            digest(md, f, buf);
        }
        md.update((byte) 1);
        digest(md, tokenizerFile, buf);
        md.update(("|" + samples + "|" + seqLen + "|" + seed + "|" + textField + "|v1").getBytes(StandardCharsets.UTF_8));
        return HexFormat.of().formatHex(md.digest()).substring(0, 32);
    }

    private static void digest(MessageDigest md, Path f, byte[] buf) throws IOException {
        try (InputStream in = Files.newInputStream(f)) {
            int n;
            while ((n = in.read(buf)) > 0) {
                md.update(buf, 0, n);
            }
        }
    }

    private static long[][] read(Path file, int samples, int seqLen) throws IOException {
        try (DataInputStream in = new DataInputStream(new java.io.BufferedInputStream(Files.newInputStream(file)))) {
            if (in.readInt() != MAGIC || in.readInt() != samples || in.readInt() != seqLen) {
                return null; // not ours or stale: re-tokenize and overwrite
            }
            long[][] w = new long[samples][seqLen];
            for (long[] row : w) {
                for (int t = 0; t < seqLen; t++) {
                    row[t] = in.readInt();
                }
            }
            return w;
        } catch (java.io.EOFException e) {
            return null; // truncated (an interrupted write): rebuild
        }
    }

    private static void write(Path file, long[][] windows) throws IOException {
        Files.createDirectories(file.getParent());
        // atomic: a concurrent run reads either nothing or the whole file
        AtomicFile.write(file, tmp -> {
            try (OutputStream os = Files.newOutputStream(tmp);
                 DataOutputStream out = new DataOutputStream(new java.io.BufferedOutputStream(os))) {
                out.writeInt(MAGIC);
                out.writeInt(windows.length);
                out.writeInt(windows[0].length);
                for (long[] row : windows) {
                    for (long id : row) {
                        out.writeInt(Math.toIntExact(id));
                    }
                }
            }
        });
    }

    /**
     * The default cache directory: -Dlopper.cache, $LOPPER_CACHE or ~/.cache/lopper, then /calibration. When it
     * cannot be created or written (e.g. a home directory that does not exist), a directory under java.io.tmpdir is
     * used instead, with a warning on stderr: a cache is an optimisation, never a reason to fail.
     */
    public static Path defaultCacheDir() {
        String env = System.getProperty("lopper.cache", System.getenv("LOPPER_CACHE"));
        Path base = env != null && !env.isBlank() ? Path.of(env) : Path.of(System.getProperty("user.home"), ".cache", "lopper");
        Path dir = base.resolve("calibration");
        if (usable(dir)) {
            return dir;
        }
        Path fallback = Path.of(System.getProperty("java.io.tmpdir"), "lopper-cache-" + System.getProperty("user.name", "user"), "calibration");
        System.err.println("warning: calibration cache " + dir + " cannot be created or written; using " + fallback
                + " (set LOPPER_CACHE to choose)");
        return usable(fallback) ? fallback : null;
    }

    private static boolean usable(Path dir) {
        try {
            Files.createDirectories(dir);
            return Files.isWritable(dir);
        } catch (IOException | SecurityException e) {
            return false;
        }
    }

    /** A growable long[]. */
    private static final class LongBuffer {
        private long[] data = new long[1 << 16];
        private int size;

        void add(long[] ids) {
            if (size + ids.length > data.length) {
                data = java.util.Arrays.copyOf(data, Math.max(data.length * 2, size + ids.length));
            }
            System.arraycopy(ids, 0, data, size, ids.length);
            size += ids.length;
        }

        long[] toArray() {
            return java.util.Arrays.copyOf(data, size);
        }
    }
}
