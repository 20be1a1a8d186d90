package dev.lopper.model;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.testing.Fixtures;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * lopper-tiny against the outputs that the training script's own PyTorch model computed (reference.safetensors,
 * reference.json): an implementation that is not Lopper's.
 */
class FixtureModelTest {
    static ModelDir dir;
    static LlamaModel model;
    static Checkpoint reference;
    static JsonNode referenceJson;

    @BeforeAll
    static void load() throws Exception {
        Path p = Fixtures.tinyModel();
        dir = ModelDir.open(p);
        model = dir.loadModel(Device.cpu());
        reference = Checkpoint.ofFile(p.resolve("reference.safetensors"));
        referenceJson = new ObjectMapper().readTree(p.resolve("reference.json").toFile());
    }

    @AfterAll
    static void close() {
        if (model != null) {
            model.close();
            dir.close();
            reference.close();
        }
    }

    @Test
    void logitsMatchPyTorchReference() {
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            for (int i = 0; i < referenceJson.get("prompts").size(); i++) {
                long[] ids = reference.load("prompt." + i + ".input_ids", m, DataType.INT64).toLongArray();
                float[] want = reference.load("prompt." + i + ".logits", m).toFloatArray();
                float[][] got = model.logits(ids);
                double max = 0;
                int v = model.config().vocabSize();
                for (int t = 0; t < ids.length; t++) {
                    for (int j = 0; j < v; j++) {
                        max = Math.max(max, Math.abs(got[t][j] - want[t * v + j]));
                    }
                }
                assertTrue(max <= 1e-3, "prompt " + i + ": max abs diff " + max);
            }
        }
    }

    @Test
    void tokenizerGivesReferenceIds() throws Exception {
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            long[] want = reference.load("test.input_ids", m, DataType.INT64).toLongArray();
            long[] got = dir.tokenizer().encode(Files.readString(Fixtures.text("test")));
            assertEquals(want.length, got.length);
            assertArrayEquals(want, got);
            for (JsonNode p : referenceJson.get("prompts")) {
                long[] ids = new ObjectMapper().convertValue(p.get("input_ids"), long[].class);
                assertArrayEquals(ids, dir.tokenizer().encode(p.get("text").asText()));
            }
        }
    }

    @Test
    void greedyGenerationMatchesReferenceAndReadsLikeKjv() {
        JsonNode p = referenceJson.get("prompts").get(0);
        long[] prompt = new ObjectMapper().convertValue(p.get("input_ids"), long[].class);
        long[] want = new ObjectMapper().convertValue(p.get("greedy_ids"), long[].class);
        long[] got = Generation.greedy(model, prompt, 20);
        assertArrayEquals(Arrays.copyOf(want, got.length), got);
        String text = dir.tokenizer().decode(got);
        assertTrue(text.startsWith("In the beginning God created"), text);
        long words = Arrays.stream(text.split("\\s+")).filter(w -> w.matches("[A-Za-z,.;:']+")).count();
        assertTrue(words >= 10, "readable words in: " + text);
    }
}
