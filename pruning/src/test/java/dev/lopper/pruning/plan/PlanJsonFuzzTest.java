package dev.lopper.pruning.plan;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.FuzzOutcome;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.LayerSelection;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
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
import java.time.Duration;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * Fuzzed plan files: fields of a valid plan (top level and per layer) set to any JSON value or removed, and the
 * file truncated. Loading and resolving it against the model (what {@code prune --apply-plan} does) must give
 * layer selections or end in one line naming the file.
 */
class PlanJsonFuzzTest {
    private static final String VALID = "{\"format\": \"lopper-plan/1\", \"toolVersion\": \"0.1.0\", \"modelHash\": null,"
            + " \"criterion\": \"manual\", \"ratio\": 0.2, \"targets\": [\"heads\", \"channels\", \"layers\"], \"allocation\": \"uniform\","
            + " \"calibration\": null, \"seed\": 0, \"removedLayers\": [],"
            + " \"layers\": [{\"layer\": 0, \"removedKvGroups\": [0], \"removedChannels\": [0, 95]},"
            + " {\"layer\": 1, \"keptHeads\": [0, 1], \"keptChannels\": [1, 2, 3]}]}";
    private static final List<String> ROOT = List.of("format", "toolVersion", "modelHash", "criterion", "criterionOptions", "ratio",
            "targets", "allocation", "calibration", "seed", "removedLayers", "layers", "result");
    private static final List<String> LAYER = List.of("layer", "keptKvGroups", "removedKvGroups", "keptHeads", "removedHeads",
            "keptChannels", "removedChannels");

    private static Path tmp;
    private static ModelConfig config;

    @BeforeContainer
    static void base() throws Exception {
        tmp = Files.createTempDirectory("lopper-fuzz-plan");
        config = RandomModels.write(tmp.resolve("m"), RandomModels.llama());
    }

    @AfterContainer
    static void clean() throws Exception {
        try (Stream<Path> s = Files.walk(tmp)) {
            for (Path p : (Iterable<Path>) s.sorted(Comparator.reverseOrder())::iterator) {
                Files.delete(p);
            }
        }
    }

    @Property(tries = 300, seed = "20261126")
    void mutatedPlansResolveOrFailInOneLine(@ForAll("edits") List<Tuple.Tuple3<Integer, String, JsonNode>> edits,
                                            @ForAll("truncation") int truncate) throws Exception {
        ObjectNode root = (ObjectNode) new ObjectMapper().readTree(VALID);
        for (Tuple.Tuple3<Integer, String, JsonNode> e : edits) {
            // layer -1: a top-level field; else a field of that entry of "layers"
            JsonNode target = e.get1() < 0 ? root : root.path("layers").path(e.get1());
            if (target instanceof ObjectNode o) {
                if (e.get3() == null) {
                    o.remove(e.get2());
                } else {
                    o.set(e.get2(), e.get3());
                }
            } else if (target.isMissingNode() && root.get("layers") instanceof ArrayNode a && e.get3() != null) {
                a.add(e.get3()); // an extra entry of any shape
            }
        }
        byte[] bytes = root.toString().getBytes(StandardCharsets.UTF_8);
        Path f = tmp.resolve("plan.json");
        Files.write(f, truncate >= 0 && truncate < bytes.length ? Arrays.copyOf(bytes, truncate) : bytes);
        Statistics.collect(FuzzOutcome.check(f.toString(), Duration.ofSeconds(20), () -> {
            PruningPlan plan = PruningPlan.load(f);
            List<LayerSelection> sel;
            try {
                sel = plan.resolve(config);
            } catch (IllegalArgumentException ex) {
                // as prune --apply-plan reports it: validation speaks of "plan: ...", the command names the file
                throw new IllegalArgumentException(ex.getMessage().replaceFirst("^plan: ", f + ": "), ex);
            }
            Allocation.result(config, sel, plan.targets().contains("heads"), plan.targets().contains("channels"),
                    plan.targets().contains("layers"), 0, 0);
        }));
    }

    @Provide
    Arbitrary<Integer> truncation() {
        return Arbitraries.frequencyOf(Tuple.of(9, Arbitraries.just(-1)), Tuple.of(1, Arbitraries.integers().between(0, 400)));
    }

    @Provide
    Arbitrary<List<Tuple.Tuple3<Integer, String, JsonNode>>> edits() {
        JsonNodeFactory f = JsonNodeFactory.instance;
        Arbitrary<JsonNode> ints = Arbitraries.oneOf(Arbitraries.integers().between(-2, 100), Arbitraries.of(Integer.MAX_VALUE, Integer.MIN_VALUE))
                .list().ofMaxSize(5).map(l -> {
                    ArrayNode a = f.arrayNode();
                    l.forEach(a::add);
                    return (JsonNode) a;
                });
        Arbitrary<JsonNode> values = Arbitraries.frequencyOf(Tuple.of(1, Arbitraries.just((JsonNode) null)),
                Tuple.of(3, anyJson()), Tuple.of(3, ints));
        Arbitrary<Tuple.Tuple3<Integer, String, JsonNode>> root = Arbitraries.of(ROOT).flatMap(n -> values.map(v -> Tuple.of(-1, n, v)));
        Arbitrary<Tuple.Tuple3<Integer, String, JsonNode>> layer = Arbitraries.integers().between(0, 2)
                .flatMap(i -> Arbitraries.of(LAYER).flatMap(n -> values.map(v -> Tuple.of(i, n, v))));
        return Arbitraries.oneOf(root, layer).list().ofMinSize(1).ofMaxSize(3);
    }

    private static Arbitrary<JsonNode> anyJson() {
        JsonNodeFactory f = JsonNodeFactory.instance;
        Arbitrary<JsonNode> scalars = Arbitraries.oneOf(
                Arbitraries.of(0L, 1L, -1L, 2L, 95L, 96L, (long) Integer.MAX_VALUE, 1L << 40, Long.MIN_VALUE).map(f::numberNode),
                Arbitraries.of(0.5, -0.1, 1.0, 1e308, 0.99).map(f::numberNode),
                Arbitraries.of("lopper-plan/1", "lopper-plan/2", "heads", "channels", "layers", "uniform", "", "x").map(f::textNode),
                Arbitraries.of(true, false).map(f::booleanNode), Arbitraries.just(f.nullNode()));
        return Arbitraries.oneOf(scalars, scalars.list().ofMaxSize(3).map(l -> f.arrayNode().addAll(l)),
                scalars.map(s -> f.objectNode().set("layer", s)));
    }
}
