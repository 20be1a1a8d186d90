package dev.lopper.training.distill;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.OutputGuard;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.IntBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Locale;
import java.util.function.Consumer;

/**
 * The teacher's predictions on a run's training windows, computed once ({@link #build}) and read per micro-batch
 * ({@link #read}): per token the teacher's top-k log-probabilities at temperature T (fp16), their token ids (int32)
 * and the log of the probability outside them (fp32). {@code 8 + 6k} bytes a token (1544 at the default k = 256), against
 * {@code 2 x vocab} for fp16 full logits (8 KiB for the fixture's 4096 tokens, 256 KiB for a 128k vocabulary).
 *
 * <pre>
 *   DIR/cache.json     format, teacher path and ModelHash, temperature, top_k, seq_len, windows, vocab_size,
 *                      record_bytes, bytes_per_token, sha256 of logits.bin
 *   DIR/logits.bin     one record per window, little-endian: ids int32[T] | top-k ids int32[T k] |
 *                      top-k log-probabilities fp16[T k] | tail log-mass fp32[T]
 * </pre>
 *
 * A cache is tied to the teacher (its hash), the temperature, k and the token windows, not to the student: runs and
 * sweep cells with the same training windows reuse it. {@link #open} verifies the file's SHA-256 against cache.json
 * and every window the run reads against the run's own tokens, so a corrupt or foreign cache is refused in one line,
 * never used. It is written under a temporary name and renamed into place when complete.
 *
 * <pre>{@code
 * TeacherCache c = TeacherCache.openOrBuild(dir, teacher, settings, data.train(), progress::message);
 * TeacherCache.TopK t = c.read(scope, first, 4);
 * }</pre>
 */
public final class TeacherCache implements AutoCloseable {
    public static final String FORMAT = "lopper-teacher-cache/1";
    public static final String JSON_FILE = "cache.json";
    public static final String DATA_FILE = "logits.bin";
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int CHUNK = 4; // windows per teacher forward while building

    /** One micro-batch's cached targets: ids [n, T, k] int64, log-probabilities [n, T, k] fp32, tail [n, T] fp32. */
    public record TopK(NDArray indices, NDArray logProbs, NDArray tailLogMass) {
    }

    private final Path dir;
    private final FileChannel channel;
    private final int seqLen;
    private final int k;
    private final long windows;

    private TeacherCache(Path dir, FileChannel channel, int seqLen, int k, long windows) {
        this.dir = dir;
        this.channel = channel;
        this.seqLen = seqLen;
        this.k = k;
        this.windows = windows;
    }

    /**
     * The one layout, written by {@link #build} and read by {@link #read}: the bytes a token takes in each section
     * of a record, in file order: its id (int32), k ids (int32), k log-probabilities (fp16), the tail (fp32).
     */
    private static int[] sectionBytes(int k) {
        return new int[] {4, 4 * k, 2 * k, 4};
    }

    /** Bytes a cached token takes: its id, k ids and k fp16 log-probabilities, the fp32 tail. */
    public static long bytesPerToken(int k) {
        return java.util.Arrays.stream(sectionBytes(k)).asLongStream().sum();
    }

    /** Windows the cache holds. */
    public long windows() {
        return windows;
    }

    /**
     * The cache in {@code dir} for these windows: opened and verified when it exists, otherwise built with the
     * layer-streamed teacher (one line of progress every tenth of the windows) and then opened.
     */
    public static TeacherCache openOrBuild(Path dir, TeacherForward teacher, String teacherHash, Distillation d, long[][] windows,
                                           Consumer<String> progress) throws IOException {
        if (!Files.isRegularFile(dir.resolve(JSON_FILE))) {
            if (Files.exists(dir) && !(Files.isDirectory(dir) && OutputGuard.isEmpty(dir))) {
                throw new IllegalArgumentException("--teacher-cache " + dir + ": exists and is not a teacher cache (no " + JSON_FILE
                        + "); give a new or empty directory");
            }
            build(dir, teacher, teacherHash, d, windows, progress);
        } else {
            progress.accept("reusing the teacher cache " + dir);
        }
        return open(dir, teacherHash, d, windows);
    }

    /** Computes the teacher's top-k on every window and writes the cache to {@code dir} (atomically). */
    public static void build(Path dir, TeacherForward teacher, String teacherHash, Distillation d, long[][] windows,
                             Consumer<String> progress) throws IOException {
        int t = windows[0].length;
        int k = d.topK();
        int vocab = teacher.config().vocabSize();
        if (k >= vocab) {
            throw new IllegalArgumentException("--kd-top-k " + k + ": expected fewer than the vocabulary's " + vocab + " tokens");
        }
        long started = System.nanoTime();
        progress.accept(String.format(Locale.ROOT, "building the teacher cache %s: %d windows x %d tokens, top-%d, %d bytes a token (%.1f MiB)",
                dir, windows.length, t, k, bytesPerToken(k), windows.length * (double) t * bytesPerToken(k) / (1 << 20)));
        Path tmp = AtomicDirectory.createTemp(dir);
        try {
            MessageDigest sha = sha256();
            try (FileChannel out = FileChannel.open(tmp.resolve(DATA_FILE), StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
                 NDManager base = NDManager.newBaseManager()) {
                int nextReport = 1;
                for (int first = 0; first < windows.length; first += CHUNK) {
                    int n = Math.min(CHUNK, windows.length - first);
                    try (NDManager m = base.newSubManager()) {
                        long[] flat = new long[n * t];
                        for (int i = 0; i < n; i++) {
                            System.arraycopy(windows[first + i], 0, flat, i * t, t);
                        }
                        NDArray tokens = m.create(flat, new Shape(n, t));
                        NDList top = KdLoss.topK(teacher.run(m, tokens, new int[0], true).logits(), k, d.temperature());
                        byte[][] sections = {tokens.toType(DataType.INT32, false).toByteArray(), top.get(0).toType(DataType.INT32, false).toByteArray(),
                            top.get(1).toType(DataType.FLOAT16, false).toByteArray(), top.get(2).toType(DataType.FLOAT32, false).toByteArray()};
                        for (int i = 0; i < n; i++) {
                            ByteBuffer rec = ByteBuffer.allocate((int) (t * bytesPerToken(k)));
                            for (int sec = 0; sec < sections.length; sec++) {
                                int len = t * sectionBytes(k)[sec];
                                rec.put(sections[sec], i * len, len);
                            }
                            rec.flip();
                            sha.update(rec.duplicate());
                            while (rec.hasRemaining()) {
                                out.write(rec);
                            }
                        }
                    }
                    int done = first + n;
                    if (done * 10L >= nextReport * (long) windows.length) {
                        progress.accept(String.format(Locale.ROOT, "teacher cache: %d/%d windows (%.0f s)", done, windows.length,
                                (System.nanoTime() - started) / 1e9));
                        nextReport = (int) (done * 10L / windows.length) + 1;
                    }
                }
                out.force(true);
            }
            ObjectNode j = JSON.createObjectNode();
            j.put("format", FORMAT);
            j.put("teacher", teacher.path().toAbsolutePath().normalize().toString());
            j.put("teacher_hash", teacherHash);
            j.put("temperature", d.temperature());
            j.put("top_k", k);
            j.put("seq_len", t);
            j.put("windows", windows.length);
            j.put("vocab_size", vocab);
            j.put("record_bytes", t * bytesPerToken(k));
            j.put("bytes_per_token", bytesPerToken(k));
            j.put("layout", "per window, little-endian: ids int32[T] | top-k ids int32[T k] | top-k log-probabilities fp16[T k] | tail log-mass fp32[T]");
            j.put("sha256", HexFormat.of().formatHex(sha.digest()));
            JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.resolve(JSON_FILE).toFile(), j);
            OutputGuard.writeMarker(tmp, "teacher-cache");
            AtomicDirectory.replace(tmp, dir);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
        progress.accept(String.format(Locale.ROOT, "teacher cache written: %s (%.0f s)", dir, (System.nanoTime() - started) / 1e9));
    }

    /**
     * Opens the cache in {@code dir} for a run with these settings and windows, after checking cache.json against
     * them, the data file's size and SHA-256, and the cached token ids against {@code windows}. Every refusal is one
     * line naming the directory, the field, what was found and what was expected.
     */
    public static TeacherCache open(Path dir, String teacherHash, Distillation d, long[][] windows) throws IOException {
        String where = "--teacher-cache " + dir + ": ";
        JsonNode j;
        try {
            j = JSON.readTree(dir.resolve(JSON_FILE).toFile());
        } catch (IOException e) {
            throw new IllegalArgumentException(where + JSON_FILE + " is not readable JSON (" + e.getMessage().lines().findFirst().orElse("")
                    + "); delete the directory to rebuild the cache");
        }
        expect(where, j, "format", FORMAT);
        expect(where, j, "teacher_hash", teacherHash);
        int t = windows[0].length;
        if (j.path("temperature").asDouble(Double.NaN) != d.temperature()) {
            throw new IllegalArgumentException(where + "built at temperature " + j.path("temperature") + ", this run asks "
                    + d.temperature() + "; give another --teacher-cache directory");
        }
        expect(where, j, "top_k", d.topK());
        expect(where, j, "seq_len", t);
        int k = d.topK();
        long record = t * bytesPerToken(k);
        long n = j.path("windows").asLong(-1);
        if (n < windows.length) {
            throw new IllegalArgumentException(where + "holds " + n + " windows, this run reads " + windows.length
                    + "; give another --teacher-cache directory");
        }
        Path data = dir.resolve(DATA_FILE);
        long size = Files.isRegularFile(data) ? Files.size(data) : -1;
        if (size != n * record) {
            throw new IllegalArgumentException(where + DATA_FILE + " has " + size + " bytes, " + JSON_FILE + " implies " + n * record
                    + "; the cache is corrupt: delete the directory to rebuild it");
        }
        FileChannel ch = FileChannel.open(data, StandardOpenOption.READ);
        try {
            MessageDigest sha = sha256();
            try (InputStream in = new DigestInputStream(Files.newInputStream(data), sha)) {
                in.transferTo(OutputStream.nullOutputStream());
            }
            String actual = HexFormat.of().formatHex(sha.digest());
            if (!actual.equals(j.path("sha256").asText())) {
                throw new IllegalArgumentException(where + DATA_FILE + " has SHA-256 " + actual + ", " + JSON_FILE + " records "
                        + j.path("sha256").asText() + "; the cache is corrupt: delete the directory to rebuild it");
            }
            TeacherCache c = new TeacherCache(dir, ch, t, k, n);
            for (int w = 0; w < windows.length; w++) {
                IntBuffer ids = c.readRecords(w, 1, t * 4L).asIntBuffer(); // a record's first section: the window's tokens
                for (int i = 0; i < t; i++) {
                    if (ids.get(i) != windows[w][i]) {
                        throw new IllegalArgumentException(where + "window " + w + " holds other tokens than this run's (token " + i + ": "
                                + ids.get(i) + ", expected " + windows[w][i] + "); the cache was built for other training data, "
                                + "--seed or --train-seq-len: give another --teacher-cache directory");
                    }
                }
            }
            return c;
        } catch (RuntimeException | IOException e) {
            ch.close();
            throw e;
        }
    }

    private static void expect(String where, JsonNode j, String field, Object want) {
        String found = j.has(field) ? j.get(field).asText() : "none";
        if (!found.equals(String.valueOf(want))) {
            throw new IllegalArgumentException(where + JSON_FILE + " has " + field + " " + found + ", this run expects " + want
                    + (field.equals("teacher_hash") ? " (the teacher changed since the cache was built)" : "")
                    + "; give another --teacher-cache directory, or delete this one to rebuild it");
        }
    }

    /** The first {@code bytesEach} bytes of records {@code first .. first + n - 1}, one after the other (little-endian). */
    private ByteBuffer readRecords(long first, int n, long bytesEach) {
        long record = seqLen * bytesPerToken(k);
        ByteBuffer all = ByteBuffer.allocate((int) (n * bytesEach)).order(ByteOrder.LITTLE_ENDIAN);
        try {
            for (int i = 0; i < n; i++) {
                ByteBuffer one = all.slice(i * (int) bytesEach, (int) bytesEach);
                long pos = (first + i) * record;
                while (one.hasRemaining()) {
                    if (channel.read(one, pos + one.position()) < 0) {
                        throw new IOException("unexpected end of file");
                    }
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(dir.resolve(DATA_FILE) + ": " + e.getMessage(), e);
        }
        return all.order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The cached targets of windows {@code first .. first + n - 1}, owned by {@code m}. */
    public TopK read(NDManager m, int first, int n) {
        if (first + n > windows) {
            throw new IllegalArgumentException("--teacher-cache " + dir + ": window " + (first + n - 1) + " asked, the cache holds " + windows);
        }
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) { // the sections are copied as they are stored
            throw new UnsupportedOperationException("teacher caches are read on little-endian machines only");
        }
        long record = seqLen * bytesPerToken(k);
        ByteBuffer all = readRecords(first, n, record);
        int[] widths = sectionBytes(k);
        ByteBuffer[] sections = new ByteBuffer[widths.length]; // [0], the token ids, was checked by open
        for (int sec = 1; sec < widths.length; sec++) {
            sections[sec] = ByteBuffer.allocateDirect(n * seqLen * widths[sec]).order(ByteOrder.nativeOrder());
        }
        for (int i = 0; i < n; i++) {
            int at = (int) (i * record) + seqLen * widths[0];
            for (int sec = 1; sec < widths.length; sec++) {
                sections[sec].put(all.slice(at, seqLen * widths[sec]));
                at += seqLen * widths[sec];
            }
        }
        // each is converted (or duplicated) into libtorch-owned storage: a tensor over a Java buffer dies with it
        NDArray idx;
        NDArray lp;
        NDArray tl;
        try (NDArray i32 = m.create(sections[1].flip(), new Shape(n, seqLen, k), DataType.INT32);
             NDArray f16 = m.create(sections[2].flip(), new Shape(n, seqLen, k), DataType.FLOAT16);
             NDArray f32 = m.create(sections[3].flip(), new Shape(n, seqLen), DataType.FLOAT32)) {
            idx = i32.toType(DataType.INT64, true);
            lp = f16.toType(DataType.FLOAT32, true);
            tl = f32.duplicate();
        }
        return new TopK(idx, lp, tl);
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
