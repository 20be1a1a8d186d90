package dev.lopper.eval;

import ai.djl.Device;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.Fixtures;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Lopper's test-split perplexity of lopper-tiny against the training script's PyTorch number. */
class FixturePerplexityTest {
    @Test
    void testSplitPerplexityMatchesReference() throws Exception {
        Path p = Fixtures.tinyModel();
        JsonNode ref = new ObjectMapper().readTree(p.resolve("reference.json").toFile()).get("test_perplexity");
        int seqLen = ref.get("seq_len").intValue();
        try (ModelDir md = ModelDir.open(p); LlamaModel lm = md.loadModel(Device.cpu())) {
            long[] ids = Perplexity.tokenize(md.tokenizer(), Fixtures.text("test"));
            PerplexityResult r = Perplexity.evaluate(lm, ids, seqLen, 8, "lopper-tiny", "kjv-test");
            assertEquals(ref.get("predicted_tokens").longValue(), r.predictedTokens());
            double want = ref.get("perplexity").doubleValue();
            double rel = Math.abs(r.perplexity() - want) / want;
            assertTrue(rel < 0.005, "perplexity " + r.perplexity() + " vs reference " + want + " (rel " + rel + ")");
        }
    }
}
