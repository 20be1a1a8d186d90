package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The reliability issue's everyday cases: bad numbers end in one-line errors, risky settings in warnings. */
class EverydayUseTest {
    @TempDir
    Path tmp;
    Path model;
    Path text;

    @BeforeEach
    void writeModel() throws Exception {
        model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama());
        text = tmp.resolve("t.txt");
        Files.writeString(text, "In the beginning God created the heaven and the earth. ".repeat(20));
    }

    @Test
    void pplRejectsABatchBelowOneInsteadOfHanging() {
        for (String batch : new String[] {"0", "-1"}) {
            CliTest.Result r = CliTest.run("ppl", model.toString(), "--text", text.toString(), "--seq-len", "64", "--batch", batch);
            assertEquals(2, r.code(), r.out());
            assertEquals("error: --batch " + batch + ": expected a whole number of at least 1 (see lopper ppl --help)", r.err().strip());
        }
    }

    @Test
    void pplWarnsWhenWindowsPassTheContextLength() {
        // the random model's max_position_embeddings is 256
        CliTest.Result r = CliTest.run("ppl", model.toString(), "--text", text.toString(), "--seq-len", "300");
        assertTrue(r.err().startsWith("warning: --seq-len 300 is longer than the model's context length (max_position_embeddings 256"), r.err());
    }

    @Test
    void jsonKeysAreSnakeCaseAndTheDeviceIsNamedAsTyped() throws Exception {
        CliTest.Result r = CliTest.run("ppl", model.toString(), "--text", text.toString(), "--seq-len", "64", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        assertEquals("cpu", j.get("device").asText());
        for (Iterator<String> it = j.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            assertTrue(k.matches("[a-z0-9_]+"), "snake_case key expected: " + k);
        }
        assertTrue(j.has("seq_len") && j.has("predicted_tokens") && j.has("mean_nll"), r.out());
    }

    @Test
    void generateStreamsTheSameTextAsJsonAndWarnsPastTheContext() throws Exception {
        CliTest.Result json = CliTest.run("generate", model.toString(), "--prompt", "Hello", "--max-tokens", "8", "--json");
        String completion = new ObjectMapper().readTree(json.out()).get("completion").asText();
        CliTest.Result streamed = CliTest.run("generate", model.toString(), "--prompt", "Hello", "--max-tokens", "8");
        assertEquals(0, streamed.code(), streamed.err());
        assertEquals("Hello" + completion, streamed.out().stripTrailing());
        assertFalse(streamed.err().contains("warning"), streamed.err());
        CliTest.Result longer = CliTest.run("generate", model.toString(), "--prompt", "Hello", "--max-tokens", "260");
        assertEquals(0, longer.code(), longer.err());
        assertTrue(longer.err().startsWith("warning: ") && longer.err().contains("max_position_embeddings 256"), longer.err());
    }

    @Test
    void debugFlagAddsTheStackTrace() {
        try {
            CliTest.Result plain = CliTest.run("inspect", tmp.resolve("missing").toString());
            assertEquals(1, plain.code());
            assertEquals(1, plain.err().strip().lines().count(), plain.err());
            CliTest.Result debug = CliTest.run("--debug", "inspect", tmp.resolve("missing").toString());
            assertEquals(1, debug.code());
            assertTrue(debug.err().contains("\tat dev.lopper."), "stack trace expected: " + debug.err());
        } finally {
            System.clearProperty("lopper.debug");
        }
    }
}
