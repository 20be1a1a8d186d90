package dev.lopper.model.fuzz;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.testing.FuzzOutcome;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.Tuple;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import net.jqwik.api.statistics.Statistics;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * Fuzzed {@code tokenizer.json}: truncated, bytes changed, or a part of its structure replaced by any JSON value.
 * Loading it (DJL's binding of the native HF tokenizers) and encoding/decoding text must work or end in one line
 * naming the file; never a crash of the JVM.
 */
class TokenizerFuzzTest {
    /** Parts of the structure that a mutation replaces ("model.vocab.<s>": an entry inside the vocabulary). */
    private static final List<String> PATHS = List.of("model", "model.type", "model.vocab", "model.merges", "model.vocab.<s>",
            "model.unk_token", "model.byte_fallback", "post_processor", "post_processor.type", "post_processor.single",
            "post_processor.special_tokens", "pre_tokenizer", "pre_tokenizer.type", "added_tokens", "decoder", "decoder.type",
            "normalizer", "truncation", "padding", "version");

    private static Path tmp;
    private static byte[] valid;

    @BeforeContainer
    static void base() throws Exception {
        tmp = Files.createTempDirectory("lopper-fuzz-tok");
        Path m = FuzzSupport.write(tmp.resolve("m"), FuzzSupport.tiny());
        valid = Files.readAllBytes(m.resolve("tokenizer.json"));
    }

    @AfterContainer
    static void clean() throws Exception {
        FuzzSupport.deleteTree(tmp);
    }

    private static FuzzOutcome.Kind load(byte[] bytes) throws Exception {
        Path f = tmp.resolve("tokenizer.json");
        Files.write(f, bytes);
        return FuzzOutcome.check(f.toString(), FuzzSupport.LIMIT, () -> {
            try (Tokenizer t = Tokenizer.load(f)) {
                long[] ids = t.encode("In the beginning <s> \u00e9\u4e2d\ud83d\ude00 \u0000");
                t.decode(ids);
                t.decode(new long[] {0, 1, 2, 300, 100000, -1});
            }
        });
    }

    @Property(tries = 150, seed = "20261126")
    void truncatedOrChangedBytesLoadOrFailInOneLine(@ForAll("cut") int cut, @ForAll("changes") List<Tuple.Tuple2<Integer, Byte>> changes)
            throws Exception {
        byte[] b = Arrays.copyOf(valid, cut < 0 ? valid.length : cut % valid.length);
        for (Tuple.Tuple2<Integer, Byte> c : changes) {
            if (b.length > 0) {
                b[c.get1() % b.length] = c.get2();
            }
        }
        Statistics.collect(load(b));
    }

    @Provide
    Arbitrary<Integer> cut() {
        return Arbitraries.oneOf(Arbitraries.just(-1), Arbitraries.integers().between(0, Integer.MAX_VALUE));
    }

    @Provide
    Arbitrary<List<Tuple.Tuple2<Integer, Byte>>> changes() {
        return Combinators.combine(Arbitraries.integers().between(0, Integer.MAX_VALUE), Arbitraries.bytes()).as(Tuple::of)
                .list().ofMaxSize(3);
    }

    @Property(tries = 200, seed = "20261126")
    void structurallyMutatedTokenizersLoadOrFailInOneLine(@ForAll("edits") List<Tuple.Tuple2<String, JsonNode>> edits)
            throws Exception {
        ObjectNode root = (ObjectNode) FuzzSupport.JSON.readTree(valid);
        for (Tuple.Tuple2<String, JsonNode> e : edits) {
            String[] path = e.get1().split("\\.", -1);
            JsonNode parent = root;
            for (int i = 0; i < path.length - 1 && parent != null; i++) {
                parent = parent.get(path[i]);
            }
            if (parent instanceof ObjectNode o) {
                if (e.get2() == null) {
                    o.remove(path[path.length - 1]);
                } else {
                    o.set(path[path.length - 1], e.get2());
                }
            }
        }
        Statistics.collect(load(root.toString().getBytes(StandardCharsets.UTF_8)));
    }

    @Provide
    Arbitrary<List<Tuple.Tuple2<String, JsonNode>>> edits() {
        Arbitrary<JsonNode> value = Arbitraries.frequencyOf(Tuple.of(1, Arbitraries.just((JsonNode) null)),
                Tuple.of(6, FuzzSupport.jsonValues()));
        return Arbitraries.of(PATHS).flatMap(p -> value.map(v -> Tuple.of(p, v))).list().ofMinSize(1).ofMaxSize(2);
    }
}
