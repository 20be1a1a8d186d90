package dev.lopper.model.fuzz;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.io.Checkpoint;
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

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * Fuzzed safetensors files: byte mutations of a real file, and headers built from edge values (dtypes, shapes,
 * offsets: negative, overlapping, huge, wrong types). Each must open and load, or end in one line naming the file.
 */
class SafeTensorsFuzzTest {
    private static Path tmp;
    private static byte[] valid;

    @BeforeContainer
    static void base() throws Exception {
        tmp = Files.createTempDirectory("lopper-fuzz-st");
        Path m = FuzzSupport.write(tmp.resolve("m"), FuzzSupport.tiny());
        valid = Files.readAllBytes(m.resolve("model.safetensors"));
    }

    @AfterContainer
    static void clean() throws Exception {
        FuzzSupport.deleteTree(tmp);
    }

    /** Opens {@code bytes} as a safetensors file and loads every tensor as fp32. */
    private static FuzzOutcome.Kind open(byte[] bytes) throws Exception {
        Path f = tmp.resolve("case.safetensors");
        Files.write(f, bytes);
        return FuzzOutcome.check(f.toString(), FuzzSupport.LIMIT, () -> {
            try (Checkpoint c = Checkpoint.ofFile(f); NDManager m = NDManager.newBaseManager(Device.cpu())) {
                for (String n : c.names()) {
                    c.load(n, m).close();
                }
            }
        });
    }

    @Property(tries = 300, seed = "20261126")
    void mutatedBytesOpenOrFailInOneLine(@ForAll("mutations") List<Tuple.Tuple2<Integer, Byte>> mutations,
                                          @ForAll("lengths") int length) throws Exception {
        byte[] b = java.util.Arrays.copyOf(valid, length < 0 ? valid.length : Math.min(length, valid.length + 64));
        long headerEnd = 8 + ByteBuffer.wrap(valid).order(ByteOrder.LITTLE_ENDIAN).getLong();
        for (Tuple.Tuple2<Integer, Byte> m : mutations) {
            // mostly in the length and JSON header, where a byte changes meaning; the rest only changes weights
            int pos = (int) (m.get1() % Math.min(b.length == 0 ? 1 : b.length, headerEnd + 16));
            if (pos < b.length) {
                b[pos] = m.get2();
            }
        }
        Statistics.collect(open(b));
    }

    @Provide
    Arbitrary<List<Tuple.Tuple2<Integer, Byte>>> mutations() {
        return Combinators.combine(Arbitraries.integers().between(0, Integer.MAX_VALUE), Arbitraries.bytes()).as(Tuple::of)
                .list().ofMinSize(1).ofMaxSize(6);
    }

    @Provide
    Arbitrary<Integer> lengths() {
        // -1: full length; else truncated (or zero-extended past the end)
        return Arbitraries.oneOf(Arbitraries.just(-1), Arbitraries.just(-1), Arbitraries.integers().between(0, 20000));
    }

    @Property(tries = 500, seed = "20261126")
    void generatedHeadersOpenOrFailInOneLine(@ForAll("headers") ObjectNode header, @ForAll("dataLengths") int dataLength,
                                             @ForAll("headerLengthDelta") long delta) throws Exception {
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + json.length + dataLength).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(json.length + delta).put(json);
        Statistics.collect(open(b.array()));
    }

    @Provide
    Arbitrary<Integer> dataLengths() {
        return Arbitraries.integers().between(0, 400);
    }

    @Provide
    Arbitrary<Long> headerLengthDelta() {
        return Arbitraries.oneOf(Arbitraries.just(0L), Arbitraries.just(0L), Arbitraries.just(0L), FuzzSupport.edgeLongs());
    }

    @Provide
    Arbitrary<ObjectNode> headers() {
        JsonNodeFactory f = JsonNodeFactory.instance;
        // each field well-typed most of the time, so that cases get past the first check to the later ones
        Arbitrary<JsonNode> dtype = Arbitraries.frequencyOf(
                Tuple.of(6, Arbitraries.of("F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL").map(f::textNode)),
                Tuple.of(1, Arbitraries.of("F8_E4M3", "f32", "").map(f::textNode)),
                Tuple.of(1, FuzzSupport.jsonValues()));
        Arbitrary<JsonNode> dim = Arbitraries.frequencyOf(Tuple.of(4, Arbitraries.longs().between(0, 8).map(f::numberNode)),
                Tuple.of(4, FuzzSupport.edgeIntegers()), Tuple.of(1, FuzzSupport.jsonValues()));
        Arbitrary<JsonNode> shape = Arbitraries.frequencyOf(Tuple.of(8, dim.list().ofMaxSize(3).map(l -> (JsonNode) f.arrayNode().addAll(l))),
                Tuple.of(1, FuzzSupport.jsonValues()));
        Arbitrary<JsonNode> offsets = Arbitraries.frequencyOf(
                Tuple.of(3, Combinators.combine(FuzzSupport.edgeIntegers(), FuzzSupport.edgeIntegers())
                        .as((a, c) -> (JsonNode) f.arrayNode().add(a).add(c))),
                Tuple.of(4, Combinators.combine(Arbitraries.longs().between(0, 64), Arbitraries.longs().between(0, 64))
                        .as((a, c) -> (JsonNode) f.arrayNode().add(a * 4).add(a * 4 + c * 4))),
                Tuple.of(1, FuzzSupport.jsonValues()));
        Arbitrary<JsonNode> tensor = Combinators.combine(dtype, shape, offsets, Arbitraries.integers().between(0, 15)).as((d, sh, o, drop) -> {
            ObjectNode t = f.objectNode();
            // drop 0..2: one field missing; otherwise all three present
            if (drop != 0) {
                t.set("dtype", d);
            }
            if (drop != 1) {
                t.set("shape", sh);
            }
            if (drop != 2) {
                t.set("data_offsets", o);
            }
            return (JsonNode) t;
        });
        Arbitrary<String> names = Arbitraries.oneOf(Arbitraries.of("a", "b", "model.norm.weight", "model.layers.0.x.weight",
                "model.layers.99999999999999.y", "model.layers..z", "model.layers.7", "__metadata__", "", "line\nbreak"),
                Arbitraries.strings().ofMaxLength(8));
        Arbitrary<JsonNode> entry = Arbitraries.frequencyOf(Tuple.of(8, tensor), Tuple.of(1, FuzzSupport.jsonValues()));
        return Arbitraries.maps(names, entry).ofMinSize(1).ofMaxSize(3).map((Map<String, JsonNode> m) -> {
            ObjectNode o = f.objectNode();
            m.forEach(o::set);
            return o;
        });
    }
}
