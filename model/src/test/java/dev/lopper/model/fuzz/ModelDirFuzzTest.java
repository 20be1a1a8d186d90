package dev.lopper.model.fuzz;

import ai.djl.Device;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
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

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * Fuzzed {@code config.json} and {@code model.safetensors.index.json} of a real (tiny) model directory: fields set
 * to values of every JSON type and edge numbers, removed or added; files truncated. Opening the directory,
 * loading the model and running a forward pass must succeed or end in one line naming a file of the directory.
 */
class ModelDirFuzzTest {
    private static final List<String> CONFIG_FIELDS = List.of("model_type", "hidden_size", "intermediate_size",
            "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
            "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling", "tie_word_embeddings", "attention_bias",
            "sliding_window", "hidden_act", "mlp_bias", "partial_rotary_factor", "lopper_layers", "bos_token_id",
            "eos_token_id", "use_sliding_window", "other");

    private static Path tmp;
    private static Path single;
    private static Path sharded;
    private static Path work;

    @BeforeContainer
    static void base() throws Exception {
        tmp = Files.createTempDirectory("lopper-fuzz-dir");
        single = FuzzSupport.write(tmp.resolve("single"), FuzzSupport.tiny());
        sharded = FuzzSupport.write(tmp.resolve("sharded"), FuzzSupport.tiny().withShards(2));
        work = tmp.resolve("case");
    }

    @AfterContainer
    static void clean() throws Exception {
        FuzzSupport.deleteTree(tmp);
    }

    /** Opens the case directory, loads the model and runs it on three tokens. */
    private static FuzzOutcome.Kind open() {
        return FuzzOutcome.check(work.toString(), FuzzSupport.LIMIT, () -> {
            try (ModelDir md = ModelDir.open(work); LlamaModel lm = md.loadModel(Device.cpu())) {
                lm.logits(new long[] {1, 2, 3});
            }
        });
    }

    /** Writes {@code base}'s JSON file {@code name} with the edits applied (null value: field removed). */
    private static void writeEdited(Path base, String name, List<Tuple.Tuple2<String, JsonNode>> edits, int truncate)
            throws Exception {
        FuzzSupport.copy(base, work);
        ObjectNode json = (ObjectNode) FuzzSupport.JSON.readTree(base.resolve(name).toFile());
        boolean index = name.equals(Checkpoint.INDEX_FILE);
        for (Tuple.Tuple2<String, JsonNode> e : edits) {
            // in the index, "weight_map" and "metadata" edit the root; other names edit weight_map entries
            boolean root = !index || e.get1().equals("weight_map") || e.get1().equals("metadata");
            JsonNode target = root ? json : json.get("weight_map");
            if (!(target instanceof ObjectNode o)) {
                continue;
            }
            if (e.get2() == null) {
                o.remove(e.get1());
            } else {
                o.set(e.get1(), e.get2());
            }
        }
        byte[] bytes = json.toString().getBytes(StandardCharsets.UTF_8);
        Files.write(work.resolve(name), truncate >= 0 && truncate < bytes.length ? Arrays.copyOf(bytes, truncate) : bytes);
    }

    @Property(tries = 250, seed = "20261126")
    void mutatedConfigsOpenOrFailInOneLine(@ForAll("configEdits") List<Tuple.Tuple2<String, JsonNode>> edits,
                                           @ForAll("truncation") int truncate) throws Exception {
        writeEdited(single, "config.json", edits, truncate);
        Statistics.collect(open());
    }

    @Property(tries = 150, seed = "20261126")
    void mutatedIndexesOpenOrFailInOneLine(@ForAll("indexEdits") List<Tuple.Tuple2<String, JsonNode>> edits,
                                           @ForAll("truncation") int truncate) throws Exception {
        writeEdited(sharded, Checkpoint.INDEX_FILE, edits, truncate);
        Statistics.collect(open());
    }

    @Provide
    Arbitrary<Integer> truncation() {
        return Arbitraries.frequencyOf(Tuple.of(9, Arbitraries.just(-1)), Tuple.of(1, Arbitraries.integers().between(0, 2000)));
    }

    /** Fields holding sizes: edited with edge integers most of the time. */
    private static final List<String> SIZE_FIELDS = List.of("hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings", "sliding_window");

    @Provide
    Arbitrary<List<Tuple.Tuple2<String, JsonNode>>> configEdits() {
        Arbitrary<JsonNode> value = Arbitraries.frequencyOf(Tuple.of(1, Arbitraries.just((JsonNode) null)),
                Tuple.of(5, FuzzSupport.jsonValues()));
        Arbitrary<Tuple.Tuple2<String, JsonNode>> any = Arbitraries.of(CONFIG_FIELDS).flatMap(f -> value.map(v -> Tuple.of(f, v)));
        Arbitrary<Tuple.Tuple2<String, JsonNode>> size = Arbitraries.of(SIZE_FIELDS)
                .flatMap(f -> FuzzSupport.edgeIntegers().map(v -> Tuple.of(f, v)));
        Arbitrary<Tuple.Tuple2<String, JsonNode>> layers = layerShapes().map(v -> Tuple.of("lopper_layers", v));
        return Arbitraries.frequencyOf(Tuple.of(3, any), Tuple.of(2, size), Tuple.of(1, layers)).list().ofMinSize(1).ofMaxSize(3);
    }

    /** lopper_layers arrays of plausible and implausible layer shapes. */
    private static Arbitrary<JsonNode> layerShapes() {
        JsonNodeFactory f = JsonNodeFactory.instance;
        Arbitrary<JsonNode> n = Arbitraries.oneOf(Arbitraries.of(0L, 1L, 2L, 24L, -1L).map(f::numberNode), FuzzSupport.jsonValues());
        Arbitrary<JsonNode> layer = Combinators.combine(n, n, n).as((h, kv, im) -> {
            ObjectNode o = f.objectNode();
            o.set("num_attention_heads", h);
            o.set("num_key_value_heads", kv);
            o.set("intermediate_size", im);
            return (JsonNode) o;
        });
        // mostly one entry, as the base model has one layer (otherwise the count is the first thing refused)
        return Arbitraries.oneOf(layer, FuzzSupport.jsonValues()).list().ofMinSize(1).ofMaxSize(1)
                .flatMap(l -> Arbitraries.frequencyOf(Tuple.of(4, Arbitraries.just(l)),
                        Tuple.of(1, Arbitraries.oneOf(layer, FuzzSupport.jsonValues()).list().ofMaxSize(3))))
                .map(l -> f.arrayNode().addAll(l));
    }

    @Provide
    Arbitrary<List<Tuple.Tuple2<String, JsonNode>>> indexEdits() {
        JsonNodeFactory f = JsonNodeFactory.instance;
        Arbitrary<String> names = Arbitraries.of("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight",
                "weight_map", "metadata", "x");
        Arbitrary<JsonNode> shard = Arbitraries.oneOf(Arbitraries.of("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                "model-00003-of-00002.safetensors", "config.json", "tokenizer.json", ".", "..", "../single/model.safetensors",
                "/etc/hostname", "").map(f::textNode), FuzzSupport.jsonValues());
        Arbitrary<JsonNode> value = Arbitraries.frequencyOf(Tuple.of(1, Arbitraries.just((JsonNode) null)), Tuple.of(6, shard));
        return names.flatMap(n -> value.map(v -> Tuple.of(n, v))).list().ofMinSize(1).ofMaxSize(3);
    }
}
