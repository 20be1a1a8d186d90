package dev.lopper.calibration;

import dev.lopper.model.Tokenizer;
import dev.lopper.model.testing.FuzzOutcome;
import dev.lopper.model.testing.RandomModels;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import net.jqwik.api.statistics.Statistics;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * Fuzzed calibration sources, as text and as JSONL: random bytes, invalid UTF-8, JSON lines of any shape, and
 * lines of up to a few MB. Loading must give windows or end in one line naming the file.
 */
class CalibrationDataFuzzTest {
    private static Path tmp;
    private static Tokenizer tokenizer;

    @BeforeContainer
    static void base() throws Exception {
        tmp = Files.createTempDirectory("lopper-fuzz-calib");
        RandomModels.write(tmp.resolve("m"), RandomModels.llama());
        tokenizer = Tokenizer.load(tmp.resolve("m"));
    }

    @AfterContainer
    static void clean() throws Exception {
        tokenizer.close();
        try (Stream<Path> s = Files.walk(tmp)) {
            for (Path p : (Iterable<Path>) s.sorted(Comparator.reverseOrder())::iterator) {
                Files.delete(p);
            }
        }
    }

    private static FuzzOutcome.Kind load(byte[] bytes, String suffix) throws Exception {
        Path f = tmp.resolve("calib" + suffix);
        Files.write(f, bytes);
        return FuzzOutcome.check(f.toString(), Duration.ofSeconds(30), () -> {
            CalibrationData d = CalibrationData.load(f, tokenizer, 3, 8, 1, "text", null);
            if (d.samples() != 3 || d.seqLen() != 8) {
                throw new AssertionError("windows " + d.samples() + " x " + d.seqLen());
            }
        });
    }

    @Property(tries = 150, seed = "20261126")
    void anyBytesAsTextOrJsonlGiveWindowsOrOneLine(@ForAll("contents") byte[] bytes, @ForAll("suffixes") String suffix)
            throws Exception {
        Statistics.collect(load(bytes, suffix));
    }

    @Provide
    Arbitrary<String> suffixes() {
        return Arbitraries.of(".txt", ".jsonl");
    }

    @Provide
    Arbitrary<byte[]> contents() {
        Arbitrary<String> line = Arbitraries.oneOf(
                Arbitraries.strings().ofMaxLength(80).map(s -> "{\"text\": \"" + s.replace("\\", "").replace("\"", "") + "\"}"),
                Arbitraries.of("{}", "[]", "null", "5", "{\"text\": 5}", "{\"text\": null}", "{\"other\": \"x\"}", "{\"text\": \"\"}",
                        "{\"text\": \"a\\ud800b\"}", "{\"text\": \"ok\"", "", "   "),
                Arbitraries.strings().ofMaxLength(80));
        Arbitrary<byte[]> lines = line.list().ofMaxSize(20).map(l -> String.join("\n", l).getBytes(StandardCharsets.UTF_8));
        Arbitrary<byte[]> random = Arbitraries.bytes().array(byte[].class).ofMaxSize(2000);
        Arbitrary<byte[]> invalidUtf8 = lines.map(b -> {
            byte[] c = java.util.Arrays.copyOf(b, b.length + 2);
            c[c.length - 2] = (byte) 0xC3; // a lead byte followed by no continuation byte
            c[c.length - 1] = (byte) 0x28;
            return c;
        });
        // lines past the tokenizer's 64K-character pieces (a few hundred KB: larger ones only cost tokenizing time)
        Arbitrary<byte[]> huge = Arbitraries.integers().between(1, 4).map(k -> {
            String s = "{\"text\": \"" + "abc ".repeat(k * 16 * 1024) + "\"}\n";
            return s.getBytes(StandardCharsets.UTF_8);
        });
        return Arbitraries.frequencyOf(net.jqwik.api.Tuple.of(4, lines), net.jqwik.api.Tuple.of(3, random),
                net.jqwik.api.Tuple.of(2, invalidUtf8), net.jqwik.api.Tuple.of(1, huge));
    }
}
