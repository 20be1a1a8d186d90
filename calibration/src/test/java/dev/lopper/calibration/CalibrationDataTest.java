package dev.lopper.calibration;

import dev.lopper.model.Tokenizer;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.DataOutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Text, JSONL and directory sources; seeded sampling; the token cache. */
class CalibrationDataTest {
    @TempDir
    Path tmp;
    Tokenizer tok;

    @BeforeEach
    void tokenizer() throws Exception {
        RandomModels.write(tmp.resolve("m"), RandomModels.llama());
        tok = Tokenizer.load(tmp.resolve("m"));
    }

    /** Byte tokenizer: token = byte + 3. */
    static long[] bytes(String s) {
        byte[] b = s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        long[] out = new long[b.length];
        for (int i = 0; i < b.length; i++) {
            out[i] = (b[i] & 0xff) + 3;
        }
        return out;
    }

    @Test
    void windowsAreSeededSlicesOfTheTokenStream() throws Exception {
        String text = "In the beginning God created the heaven and the earth.\nAnd the earth was without form.\n".repeat(20);
        Path f = Files.writeString(tmp.resolve("a.txt"), text);
        CalibrationData a = CalibrationData.load(f, tok, 6, 16, 0, "text", null);
        CalibrationData b = CalibrationData.load(f, tok, 6, 16, 0, "text", null);
        CalibrationData c = CalibrationData.load(f, tok, 6, 16, 1, "text", null);
        assertEquals(6, a.samples());
        assertEquals(16, a.seqLen());
        assertTrue(Arrays.deepEquals(a.windows(), b.windows()), "same seed, same windows");
        assertFalse(Arrays.deepEquals(a.windows(), c.windows()), "another seed, other windows");
        String stream = Arrays.toString(bytes(text));
        for (long[] w : a.windows()) {
            String sub = Arrays.toString(w);
            assertTrue(stream.contains(sub.substring(1, sub.length() - 1)), "window is a contiguous slice");
        }
    }

    @Test
    void jsonlAndDirectorySources() throws Exception {
        Path jsonl = Files.writeString(tmp.resolve("d.jsonl"), "{\"text\":\"abcdefghij\"}\n\n{\"text\":\"klmnopqrst\",\"id\":2}\n");
        CalibrationData j = CalibrationData.load(jsonl, tok, 3, 8, 5, "text", null);
        String stream = Arrays.toString(bytes("abcdefghij\n\nklmnopqrst\n\n"));
        for (long[] w : j.windows()) {
            String sub = Arrays.toString(w);
            assertTrue(stream.contains(sub.substring(1, sub.length() - 1)));
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CalibrationData.load(jsonl, tok, 3, 8, 5, "content", null));
        assertTrue(e.getMessage().contains("line 1 has no string field 'content'"), e.getMessage());

        Path dir = Files.createDirectories(tmp.resolve("docs"));
        Files.writeString(dir.resolve("b.txt"), "0123456789");
        Files.writeString(dir.resolve("a.txt"), "ABCDEFGHIJ");
        CalibrationData d = CalibrationData.load(dir, tok, 40, 4, 3, "text", null);
        String dirStream = Arrays.toString(bytes("ABCDEFGHIJ0123456789")); // name order: a.txt then b.txt
        for (long[] w : d.windows()) {
            String sub = Arrays.toString(w);
            assertTrue(dirStream.contains(sub.substring(1, sub.length() - 1)));
        }
        assertThrows(IllegalArgumentException.class, () -> CalibrationData.load(dir, tok, 1, 40, 3, "text", null),
                "window longer than the corpus");
    }

    @Test
    void aBinaryFileIsAClearErrorNamingIt() throws Exception {
        Path bin = Files.write(tmp.resolve("weights.bin"), new byte[] {(byte) 0xC3, (byte) 0x28, 0, (byte) 0xFF, (byte) 0xFE, 65});
        for (Path f : new Path[] {bin, Files.copy(bin, tmp.resolve("weights.jsonl"))}) {
            IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    () -> CalibrationData.load(f, tok, 2, 4, 0, "text", null));
            assertEquals("--calib " + f + ": is not UTF-8 text (a binary file?); expected a .txt file, a .jsonl file or a directory of text files",
                    e.getMessage());
        }
    }

    @Test
    void anUnwritableCacheFallsBackToATemporaryOne() {
        String old = System.getProperty("lopper.cache");
        try {
            System.setProperty("lopper.cache", "/proc/lopper-cannot-exist"); // not creatable, even for root
            Path dir = CalibrationData.defaultCacheDir();
            org.junit.jupiter.api.Assertions.assertNotNull(dir);
            org.junit.jupiter.api.Assertions.assertTrue(dir.startsWith(Path.of(System.getProperty("java.io.tmpdir"))), dir.toString());
            org.junit.jupiter.api.Assertions.assertTrue(Files.isWritable(dir));
        } finally {
            if (old == null) {
                System.clearProperty("lopper.cache");
            } else {
                System.setProperty("lopper.cache", old);
            }
        }
    }

    @Test
    void secondLoadReadsTheCache() throws Exception {
        Path f = Files.writeString(tmp.resolve("a.txt"), "the quick brown fox jumps over the lazy dog ".repeat(10));
        Path cache = tmp.resolve("cache");
        CalibrationData a = CalibrationData.load(f, tok, 4, 8, 0, "text", cache);
        List<Path> files;
        try (var s = Files.list(cache)) {
            files = s.toList();
        }
        assertEquals(1, files.size());
        assertTrue(files.get(0).getFileName().toString().contains(a.key()));
        // overwrite the cached windows with sevens: a cache hit returns them instead of re-tokenizing
        try (DataOutputStream out = new DataOutputStream(Files.newOutputStream(files.get(0)))) {
            out.writeInt(0x4C50434C);
            out.writeInt(4);
            out.writeInt(8);
            for (int i = 0; i < 32; i++) {
                out.writeInt(7);
            }
        }
        CalibrationData b = CalibrationData.load(f, tok, 4, 8, 0, "text", cache);
        assertArrayEquals(new long[] {7, 7, 7, 7, 7, 7, 7, 7}, b.windows()[3]);
        // any change to the key's inputs misses the cache
        CalibrationData c = CalibrationData.load(f, tok, 4, 8, 1, "text", cache);
        assertFalse(c.windows()[0][0] == 7 && c.windows()[0][1] == 7);
    }
}
