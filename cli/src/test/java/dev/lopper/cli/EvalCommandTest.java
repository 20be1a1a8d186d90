package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper eval} writes a report with provenance, {@code compare} reads two, {@code --out} is guarded. */
class EvalCommandTest {
    @TempDir
    Path tmp;

    @Test
    void evalReportAndCompare() throws Exception {
        Path model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama());
        Path text = tmp.resolve("t.txt");
        Files.writeString(text, Files.readString(Fixtures.text("test")).substring(0, 1200));
        Path a = tmp.resolve("a.json");
        CliTest.Result r = CliTest.run("eval", model.toString(), "--text", text.toString(), "--task", "kjv-cloze=" + Fixtures.text("test"),
                "--limit", "3", "--out", a.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("perplexity") && r.out().contains("kjv-cloze acc") && r.out().contains("decode tok/s"), r.out());
        JsonNode j = new ObjectMapper().readTree(a.toFile());
        assertEquals("lopper-eval/1", j.get("format").asText());
        assertEquals("lopper", j.get("backend").asText());
        assertTrue(j.get("model_hash").asText().startsWith("sha256:"));
        assertTrue(j.get("perplexity").get("data_hash").asText().startsWith("sha256:"));
        assertEquals(1234, j.get("seed").asLong());
        assertEquals(3, j.get("tasks").get(0).get("examples").asInt());
        assertTrue(j.get("speed").get("decode_kv_cache").asBoolean());
        // the report is not overwritten without --overwrite
        CliTest.Result again = CliTest.run("eval", model.toString(), "--text", text.toString(), "--out", a.toString(), "--no-speed");
        assertEquals(1, again.code());
        assertTrue(again.err().contains("--overwrite"), again.err());
        Path b = tmp.resolve("b.json");
        assertEquals(0, CliTest.run("eval", model.toString(), "--text", text.toString(), "--seq-len", "32", "--stride", "16", "--no-speed",
                "--out", b.toString()).code());
        CliTest.Result c = CliTest.run("compare", a.toString(), b.toString());
        assertEquals(0, c.code(), c.err());
        assertTrue(c.out().contains("llm-pruner, window 128") && c.out().contains("custom, window 32, stride 16"), c.out());
        CliTest.Result bad = CliTest.run("compare", text.toString());
        assertEquals(1, bad.code());
        assertTrue(bad.err().contains(text.toString()), bad.err());
    }
}
