package dev.lopper.cli;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every command refuses a model whose weights disagree with its config.json when it opens the model (headers
 * only, before anything is allocated): exit 1, one line naming the file, the tensor or field, found and expected.
 */
class WeightCheckCliTest {
    private static final String DOWN = "model.layers.1.mlp.down_proj.weight";

    @TempDir
    static Path tmp;
    static Path good;
    static Path text;

    @BeforeAll
    static void models() throws Exception {
        good = tmp.resolve("good");
        RandomModels.write(good, RandomModels.llama());
        text = tmp.resolve("t.txt");
        Files.writeString(text, "In the beginning God created the heaven and the earth. ".repeat(20));
    }

    /** Each command line of the issue, run on {@code model}; each must fail with {@code expected} in one line. */
    private static void everyCommandRefuses(Path model, String expected) {
        String m = model.toString();
        String[][] commands = {
            {"inspect", m},
            {"export", m, "--format", "hf", "--out", tmp.resolve("out-hf-" + model.getFileName()).toString()},
            {"prune", m, "--method", "magnitude", "--ratio", "0.2", "--out", tmp.resolve("out-p-" + model.getFileName()).toString()},
            {"prune", m, "--method", "wanda-sp", "--ratio", "0.2", "--calib", text.toString(), "--samples", "2", "--seq-len", "16",
                "--out", tmp.resolve("out-w-" + model.getFileName()).toString()},
            {"ppl", m, "--text", text.toString(), "--seq-len", "32"},
            {"generate", m, "--prompt", "Hi", "--max-tokens", "2"},
        };
        for (String[] c : commands) {
            CliTest.Result r = CliTest.run(c);
            assertEquals(1, r.code(), String.join(" ", c) + ": " + r.out() + r.err());
            String err = r.err().strip();
            assertFalse(err.contains("\n"), String.join(" ", c) + ": more than one line: " + err);
            assertTrue(err.startsWith("error: ") && err.contains(expected), String.join(" ", c) + ": " + err);
            assertFalse(Files.exists(tmp.resolve("out-hf-" + model.getFileName())), "export wrote an output");
        }
    }

    /** A copy of the good model with its tensors edited. */
    private static Path edited(String name, Consumer<TensorMap> edit, NDManager m) throws Exception {
        Path out = tmp.resolve(name);
        try (Checkpoint ck = Checkpoint.open(good)) {
            TensorMap t = new TensorMap(ck);
            edit.accept(t);
            ModelWriter.save(out, ModelConfig.load(good), t, null, good, ModelWriter.DEFAULT_MAX_SHARD_BYTES, Map.of());
        }
        return out;
    }

    private static Path withConfig(String name, Consumer<ObjectNode> edit) throws Exception {
        Path out = tmp.resolve(name);
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            edited(name, t -> { }, m);
        }
        ObjectMapper om = new ObjectMapper();
        ObjectNode cfg = (ObjectNode) om.readTree(out.resolve("config.json").toFile());
        edit.accept(cfg);
        om.writeValue(out.resolve("config.json").toFile(), cfg);
        return out;
    }

    @Test
    void aMissingTensorIsRefusedByEveryCommand() throws Exception {
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            Path model = edited("missing", t -> t.remove(DOWN), m);
            everyCommandRefuses(model, model.resolve("model.safetensors") + ": tensor '" + DOWN + "' is missing ("
                    + model.resolve("config.json") + " implies shape (64, 96))");
        }
    }

    @Test
    void aWronglyShapedTensorIsRefusedByEveryCommand() throws Exception {
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            // the shape of the "shape '[688, -1]' is invalid": down_proj with a column too many
            Path model = edited("reshaped", t -> t.put(DOWN, m.zeros(new Shape(64, 97))), m);
            everyCommandRefuses(model, model.resolve("model.safetensors") + ": tensor '" + DOWN + "' has shape (64, 97), but "
                    + model.resolve("config.json") + " implies (64, 96)");
        }
    }

    @Test
    void aConfigDisagreeingWithTheTensorsIsRefusedByEveryCommand() throws Exception {
        Path model = withConfig("inter", c -> c.put("intermediate_size", 100));
        everyCommandRefuses(model, "tensor 'model.layers.0.mlp.gate_proj.weight' has shape (96, 64), but "
                + model.resolve("config.json") + " implies (100, 64)");
    }

    @Test
    void moreLayersThanTheCheckpointHoldsAreRefusedByEveryCommand() throws Exception {
        Path model = withConfig("layers3", c -> c.put("num_hidden_layers", 3));
        everyCommandRefuses(model, model.resolve("config.json") + ": field 'num_hidden_layers': found 3, expected 2 ("
                + model.resolve("model.safetensors") + " holds tensors of layers 0..1)");
    }

    @Test
    void fewerLayersThanTheCheckpointHoldsAreRefusedByEveryCommand() throws Exception {
        Path model = withConfig("layers1", c -> c.put("num_hidden_layers", 1));
        everyCommandRefuses(model, model.resolve("config.json") + ": field 'num_hidden_layers': found 1, expected at least 2: "
                + model.resolve("model.safetensors") + " holds tensor 'model.layers.1.");
    }

    @Test
    void anAbsurdLayerCountIsRefusedBeforeAnythingIsAllocated() throws Exception {
        // was a 22-frame OutOfMemoryError: one layer shape per claimed layer was built before any check
        Path model = withConfig("layersMax", c -> c.put("num_hidden_layers", Integer.MAX_VALUE));
        everyCommandRefuses(model, model.resolve("config.json") + ": field 'num_hidden_layers': found 2147483647, expected at most 65536");
    }

    @Test
    void anAbsurdWidthIsRefused() throws Exception {
        Path model = withConfig("wide", c -> c.put("hidden_size", Integer.MAX_VALUE - 1));
        everyCommandRefuses(model, "tensor 'model.embed_tokens.weight' has shape (300, 64), but " + model.resolve("config.json")
                + " implies (300, 2147483646)");
    }
}
