package dev.lopper.model;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.testing.Fixtures;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The shipped fixture models (lopper-tiny: 8 heads / 4 KV heads; lopper-pydoc: 6 heads / 2 KV heads, another shape
 * and corpus) against the outputs that the training script's own PyTorch model computed (reference.safetensors,
 * reference.json): an implementation that is not Lopper's.
 */
class FixtureModelTest {
    /** One fixture model, its reference outputs and its Java forward pass; closes all three. */
    private record Loaded(ModelDir dir, LlamaModel model, Checkpoint reference, JsonNode json) implements AutoCloseable {
        static Loaded of(String name) throws Exception {
            Path p = Fixtures.model(name);
            ModelDir dir = ModelDir.open(p);
            return new Loaded(dir, dir.loadModel(Device.cpu()), Checkpoint.ofFile(p.resolve("reference.safetensors")),
                    new ObjectMapper().readTree(p.resolve("reference.json").toFile()));
        }

        @Override
        public void close() {
            model.close();
            dir.close();
            reference.close();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {Fixtures.TINY, Fixtures.PYDOC})
    void logitsMatchPyTorchReference(String name) throws Exception {
        try (Loaded f = Loaded.of(name); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            for (int i = 0; i < f.json().get("prompts").size(); i++) {
                long[] ids = f.reference().load("prompt." + i + ".input_ids", m, DataType.INT64).toLongArray();
                float[] want = f.reference().load("prompt." + i + ".logits", m).toFloatArray();
                float[][] got = f.model().logits(ids);
                double max = 0;
                int v = f.model().config().vocabSize();
                for (int t = 0; t < ids.length; t++) {
                    for (int j = 0; j < v; j++) {
                        max = Math.max(max, Math.abs(got[t][j] - want[t * v + j]));
                    }
                }
                assertTrue(max <= 1e-3, name + " prompt " + i + ": max abs diff " + max);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {Fixtures.TINY, Fixtures.PYDOC})
    void tokenizerGivesReferenceIds(String name) throws Exception {
        try (Loaded f = Loaded.of(name); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            long[] want = f.reference().load("test.input_ids", m, DataType.INT64).toLongArray();
            long[] got = f.dir().tokenizer().encode(Files.readString(Fixtures.text(name, "test")));
            assertEquals(want.length, got.length);
            assertArrayEquals(want, got);
            for (JsonNode p : f.json().get("prompts")) {
                long[] ids = new ObjectMapper().convertValue(p.get("input_ids"), long[].class);
                assertArrayEquals(ids, f.dir().tokenizer().encode(p.get("text").asText()));
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {Fixtures.TINY, Fixtures.PYDOC})
    void greedyGenerationMatchesReferenceInReadableWords(String name) throws Exception {
        try (Loaded f = Loaded.of(name)) {
            JsonNode p = f.json().get("prompts").get(0);
            long[] prompt = new ObjectMapper().convertValue(p.get("input_ids"), long[].class);
            long[] want = new ObjectMapper().convertValue(p.get("greedy_ids"), long[].class);
            long[] got = Generation.greedy(f.model(), prompt, 20);
            assertArrayEquals(Arrays.copyOf(want, got.length), got);
            String text = f.dir().tokenizer().decode(got);
            assertTrue(text.startsWith(p.get("text").asText()), text);
            long words = Arrays.stream(text.split("\\s+")).filter(w -> w.matches("[A-Za-z,.;:']+")).count();
            assertTrue(words >= 10, "readable words in: " + text);
        }
    }
}
