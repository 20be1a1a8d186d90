package dev.lopper.model.fuzz;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import dev.lopper.model.testing.RandomModels;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.stream.Stream;

/** Shared pieces of the fuzz properties: a tiny base model and arbitrary JSON values with edge cases. */
final class FuzzSupport {
    static final ObjectMapper JSON = new ObjectMapper();
    /** Per case; a generous bound under load, far above the milliseconds a case takes. */
    static final Duration LIMIT = Duration.ofSeconds(20);

    private FuzzSupport() {
    }

    /** One layer, hidden 16, 2 heads / 1 KV head of 8, 24 channels, vocab 259 (the byte tokenizer's minimum). */
    static RandomModels.Spec tiny() {
        return new RandomModels.Spec(dev.lopper.model.config.Family.LLAMA, 259, 16, 1, 2, 1, 8, 24, false, false, 1,
                ai.djl.ndarray.types.DataType.FLOAT32, 7, 10000.0, null, 0);
    }

    static Path write(Path dir, RandomModels.Spec spec) throws IOException {
        RandomModels.write(dir, spec);
        return dir;
    }

    /** Copies the files of a model directory (flat) into {@code to}, replacing what is there. */
    static void copy(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        try (Stream<Path> s = Files.list(to)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                Files.delete(p);
            }
        }
        try (Stream<Path> s = Files.list(from)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                Files.copy(p, to.resolve(p.getFileName()));
            }
        }
    }

    static void deleteTree(Path dir) throws IOException {
        if (dir == null || !Files.exists(dir)) {
            return;
        }
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : (Iterable<Path>) s.sorted(Comparator.reverseOrder())::iterator) {
                Files.delete(p);
            }
        }
    }

    /** Integers at the edges: around 0, small sizes, int and long limits. */
    static Arbitrary<Long> edgeLongs() {
        return Arbitraries.oneOf(Arbitraries.longs().between(-3, 300),
                Arbitraries.of(0L, 1L, 2L, 8L, 16L, 24L, 259L, -1L, (long) Integer.MAX_VALUE, 1L << 31, 1L << 32, 1L << 40,
                        1L << 62, Long.MAX_VALUE, Long.MIN_VALUE, (long) Integer.MIN_VALUE));
    }

    /** Integral JSON numbers at the edges, also past 2^63 (which a careless reader wraps into small numbers). */
    static Arbitrary<JsonNode> edgeIntegers() {
        JsonNodeFactory f = JsonNodeFactory.instance;
        return Arbitraries.frequencyOf(
                net.jqwik.api.Tuple.of(8, edgeLongs().map(f::numberNode)),
                net.jqwik.api.Tuple.of(1, Arbitraries.of("18446744073709551617", "9223372036854775808", "-9223372036854775809",
                        "340282366920938463463374607431768211456").map(v -> f.numberNode(new java.math.BigInteger(v)))));
    }

    /** Any JSON value: edge numbers, strings, booleans, null, arrays and objects (shallow). */
    static Arbitrary<JsonNode> jsonValues() {
        JsonNodeFactory f = JsonNodeFactory.instance;
        Arbitrary<JsonNode> scalars = Arbitraries.oneOf(
                edgeLongs().map(f::numberNode),
                Arbitraries.of(0.5, -1.5, 1e-6, 1e308, -0.0, 3.0).map(f::numberNode),
                Arbitraries.of("", "llama", "qwen2", "qwen3", "phi3", "mistral", "silu", "gelu", "F32", "BF16", "x", "llama3",
                        "linear", "longrope", "\u0000", "model.safetensors", "../x").map(f::textNode),
                Arbitraries.strings().ofMaxLength(12).map(f::textNode),
                Arbitraries.of(true, false).map(f::booleanNode),
                Arbitraries.just(f.nullNode()));
        return Arbitraries.oneOf(scalars, scalars, scalars,
                scalars.list().ofMaxSize(4).map(l -> f.arrayNode().addAll(l)),
                Arbitraries.maps(Arbitraries.of("type", "rope_type", "factor", "num_attention_heads", "num_key_value_heads",
                        "intermediate_size", "id", "a"), scalars).ofMaxSize(4).map(m -> {
                            var o = f.objectNode();
                            m.forEach(o::set);
                            return o;
                        }));
    }
}
