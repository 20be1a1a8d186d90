package dev.lopper.model;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Whole model directories: sharding, save/reload, tokenizer, and errors for bad directories. */
class ModelDirTest {
    @TempDir
    Path tmp;

    @Test
    void shardedCheckpointHasIndexAndSameLogitsAsSingleFile() throws Exception {
        RandomModels.write(tmp.resolve("one"), RandomModels.llama());
        RandomModels.write(tmp.resolve("three"), RandomModels.llama().withShards(3));
        assertTrue(Files.exists(tmp.resolve("three").resolve(Checkpoint.INDEX_FILE)));
        long shards;
        try (var s = Files.list(tmp.resolve("three"))) {
            shards = s.filter(x -> x.getFileName().toString().matches("model-\\d{5}-of-\\d{5}\\.safetensors")).count();
        }
        assertTrue(shards >= 3, shards + " shards");
        long[] ids = {1, 50, 7, 99, 3};
        try (ModelDir a = ModelDir.open(tmp.resolve("one")); ModelDir b = ModelDir.open(tmp.resolve("three"));
             LlamaModel ma = a.loadModel(Device.cpu()); LlamaModel mb = b.loadModel(Device.cpu())) {
            assertArrayEquals(ma.logits(ids)[4], mb.logits(ids)[4]);
        }
    }

    @Test
    void saveAndReloadGivesIdenticalLogits() throws Exception {
        Path src = tmp.resolve("src");
        RandomModels.write(src, RandomModels.llama().withDtype(DataType.BFLOAT16));
        long[] ids = {1, 2, 3, 4, 5, 6};
        try (ModelDir a = ModelDir.open(src); LlamaModel ma = a.loadModel(Device.cpu())) {
            ModelWriter.save(tmp.resolve("copy"), a.config(), a.checkpoint(), null, src, ModelWriter.DEFAULT_MAX_SHARD_BYTES, Map.of());
            try (ModelDir b = ModelDir.open(tmp.resolve("copy")); LlamaModel mb = b.loadModel(Device.cpu())) {
                assertEquals(DataType.BFLOAT16, b.checkpoint().storedType(WeightNames.EMBED));
                for (int t = 0; t < ids.length; t++) {
                    assertArrayEquals(ma.logits(ids)[t], mb.logits(ids)[t]);
                }
                assertTrue(Files.exists(tmp.resolve("copy/tokenizer.json")));
            }
        }
    }

    @Test
    void tokenizerRoundTrip() throws Exception {
        RandomModels.write(tmp.resolve("m"), RandomModels.llama());
        try (ModelDir md = ModelDir.open(tmp.resolve("m"))) {
            long[] ids = md.tokenizer().encode("Hi!");
            // BOS, then one token per byte: byte b has id 3 + b
            assertArrayEquals(new long[] {1, 3 + 'H', 3 + 'i', 3 + '!'}, ids);
            assertEquals("Hi!", md.tokenizer().decode(ids));
        }
    }

    @Test
    void tensorShapeDisagreeingWithConfig() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama());
        ObjectMapper om = new ObjectMapper();
        ObjectNode cfg = (ObjectNode) om.readTree(dir.resolve("config.json").toFile());
        cfg.put("intermediate_size", 100);
        om.writeValue(dir.resolve("config.json").toFile(), cfg);
        // found when the directory is opened (headers only), naming the file that holds the tensor
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelDir.open(dir));
        assertEquals(dir.resolve("model.safetensors") + ": tensor 'model.layers.0.mlp.gate_proj.weight' has shape (96, 64), but "
                + dir.resolve("config.json") + " implies (100, 64)", e.getMessage());
    }

    @Test
    void missingTensor() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withTied(true));
        ObjectMapper om = new ObjectMapper();
        ObjectNode cfg = (ObjectNode) om.readTree(dir.resolve("config.json").toFile());
        cfg.put("tie_word_embeddings", false);
        om.writeValue(dir.resolve("config.json").toFile(), cfg);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelDir.open(dir));
        assertEquals(dir.resolve("model.safetensors") + ": tensor 'lm_head.weight' is missing (" + dir.resolve("config.json")
                + " implies shape (300, 64))", e.getMessage());
    }

    @Test
    void notADirectory() {
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelDir.open(tmp.resolve("nope")));
        assertTrue(e.getMessage().endsWith("does not exist; expected a model directory (config.json, *.safetensors, tokenizer.json)"));
    }
}
