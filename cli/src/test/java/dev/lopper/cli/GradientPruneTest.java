package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.config.Family;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper prune --method llm-pruner|gblm} end to end on a tiny random model: prune, print settings, then ppl. */
class GradientPruneTest {
    @TempDir
    static Path shared;
    @TempDir
    Path tmp;

    @BeforeAll
    static void cacheInTemp() {
        System.setProperty("lopper.cache", shared.resolve("cache").toString());
    }

    private Path text() throws Exception {
        return Files.writeString(tmp.resolve("calib.txt"),
                "In the beginning God created the heaven and the earth. And the earth was without form, and void.\n".repeat(30));
    }

    @ParameterizedTest
    @CsvSource({"llm-pruner,--taylor,param_mix,keep_first=1 (paper)", "llm-pruner,--grouping,max,taylor=param_first",
            "gblm,--gblm-scale,100,samples=8 (user)"})
    void prunesThenMeasures(String method, String option, String value, String printed) throws Exception {
        Path dir = tmp.resolve("model");
        RandomModels.write(dir, RandomModels.llama().withHeads(8, 4).withLayers(5));
        Path out = tmp.resolve("pruned");
        CliTest.Result r = CliTest.run("prune", dir.toString(), "--method", method, option, value, "--ratio", "0.3",
                "--calib", text().toString(), "--samples", "8", "--seq-len", "32", "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        // the settings, the paper's defaults marked as such, are printed with the criterion's options
        assertTrue(r.out().contains(value), r.out());
        for (String part : printed.split("=")) {
            assertTrue(r.out().contains(part), part + " in\n" + r.out());
        }
        assertTrue(r.out().contains(method), r.out());
        CliTest.Result ppl = CliTest.run("ppl", out.toString(), "--text", text().toString(), "--seq-len", "32", "--json");
        assertEquals(0, ppl.code(), ppl.err());
        JsonNode p = new ObjectMapper().readTree(ppl.out());
        double v = p.get("perplexity").asDouble();
        assertTrue(Double.isFinite(v) && v > 1, "perplexity " + v);
    }

    @Test
    void jsonRecordsThePaperSettings() throws Exception {
        Path dir = tmp.resolve("model");
        RandomModels.write(dir, RandomModels.llama().withHeads(8, 4).withLayers(5));
        CliTest.Result r = CliTest.run("prune", dir.toString(), "--method", "llm-pruner", "--ratio", "0.5", "--calib", text().toString(),
                "--plan-out", tmp.resolve("plan.json").toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode s = new ObjectMapper().readTree(r.out()).get("settings");
        assertEquals(10, s.get("samples").get("value").asInt());
        assertEquals("paper", s.get("samples").get("from").asText());
        assertEquals(64, s.get("seq_len").get("value").asInt());
        // the README's layers 4..30 of 32 scaled to 5 layers: round(4 x 5 / 32 = 0.625) = 1, round(2 x 5 / 32 = 0.3125) = 0
        assertEquals(1, s.get("keep_first").get("value").asInt());
        assertEquals(0, s.get("keep_last").get("value").asInt());
        assertEquals("param_first", s.get("options").get("value").get("taylor").asText());
        assertEquals("paper", s.get("options").get("value").get("layers").asText());
        assertEquals("llm-pruner", s.get("counting").get("value").asText());
        assertEquals("sum", s.get("options").get("value").get("grouping").asText());
        JsonNode layers = new ObjectMapper().readTree(r.out()).get("layers");
        assertEquals(8, layers.get(0).get("heads").asInt());
        assertNotEquals(8, layers.get(3).get("heads").asInt());
        assertEquals(4, layers.get(4).get("heads").asInt()); // (4 x 16 - int(64 x 0.5)) // 16 = 2 of 4 KV groups
    }

    @Test
    void unsupportedFamilyIsRefusedWithItsName() throws Exception {
        Path dir = tmp.resolve("qwen3");
        RandomModels.write(dir, RandomModels.llama().withFamily(Family.QWEN3));
        CliTest.Result r = CliTest.run("prune", dir.toString(), "--method", "gblm", "--ratio", "0.2", "--calib", text().toString(),
                "--plan-out", tmp.resolve("p.json").toString());
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("qwen3"), r.err());
    }

    @Test
    void anOptionOfAnotherMethodIsRefused() throws Exception {
        Path dir = tmp.resolve("model");
        RandomModels.write(dir, RandomModels.llama());
        CliTest.Result r = CliTest.run("prune", dir.toString(), "--method", "flap", "--taylor", "param_first", "--ratio", "0.2",
                "--calib", text().toString(), "--plan-out", tmp.resolve("p.json").toString());
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("taylor"), r.err());
    }
}
