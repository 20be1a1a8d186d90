package dev.lopper.eval;

import ai.djl.Device;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.Fixtures;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Lopper's test-split perplexity of each fixture model against the training script's PyTorch number. */
class FixturePerplexityTest {
    @ParameterizedTest
    @ValueSource(strings = {Fixtures.TINY, Fixtures.PYDOC})
    void testSplitPerplexityMatchesReference(String name) throws Exception {
        Path p = Fixtures.model(name);
        JsonNode ref = new ObjectMapper().readTree(p.resolve("reference.json").toFile()).get("test_perplexity");
        int seqLen = ref.get("seq_len").intValue();
        try (ModelDir md = ModelDir.open(p); LlamaModel lm = md.loadModel(Device.cpu())) {
            long[] ids = Perplexity.tokenize(md.tokenizer(), Fixtures.text(name, "test"));
            PerplexityResult r = Perplexity.evaluate(lm, ids, seqLen, 8, name, "test");
            assertEquals(ref.get("predicted_tokens").longValue(), r.predictedTokens());
            double want = ref.get("perplexity").doubleValue();
            double rel = Math.abs(r.perplexity() - want) / want;
            assertTrue(rel < 0.005, "perplexity " + r.perplexity() + " vs reference " + want + " (rel " + rel + ")");
        }
    }
}
