package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The CLI end to end on a generated model: outputs, exit codes and one-line errors. */
class CliTest {
    @TempDir
    static Path tmp;
    static Path model;

    record Result(int code, String out, String err) {
    }

    static Result run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = Main.commandLine();
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int code = cl.execute(args);
        return new Result(code, out.toString(), err.toString());
    }

    @BeforeAll
    static void model() throws Exception {
        model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama().withHeads(4, 2));
    }

    @Test
    void inspectJson() throws Exception {
        Result r = run("inspect", model.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        assertEquals("llama", j.get("family").asText());
        assertEquals(2, j.get("per_layer").size());
        assertEquals(2, j.get("per_layer").get(1).get("kv_heads").asInt());
        // every element of the checkpoint is counted by the config's parameter formula
        assertEquals(j.get("checkpoint_elements").asLong(), j.get("parameters").asLong());
    }

    @Test
    void inspectText() {
        Result r = run("inspect", model.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("family      llama (2 layers, hidden 64"), r.out());
    }

    @Test
    void pplEndsWithPerplexityLine() throws Exception {
        Path text = tmp.resolve("t.txt");
        Files.writeString(text, "In the beginning God created the heaven and the earth. ".repeat(20));
        Result r = run("ppl", model.toString(), "--text", text.toString(), "--seq-len", "64");
        assertEquals(0, r.code(), r.err());
        String[] lines = r.out().strip().split("\n");
        assertTrue(lines[lines.length - 1].matches("perplexity: \\d+\\.\\d{4}"), r.out());
    }

    @Test
    void generateJson() throws Exception {
        Result r = run("generate", model.toString(), "--prompt", "Hello", "--max-tokens", "5", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        assertEquals(5, j.get("generated_ids").size());
    }

    @Test
    void emptyTextIsAClearError() throws Exception {
        Path empty = tmp.resolve("empty.txt");
        Files.writeString(empty, "\n");
        Result r = run("ppl", model.toString(), "--text", empty.toString());
        assertEquals(1, r.code());
        assertEquals("error: " + empty + ": is empty; expected text to evaluate", r.err().strip());
    }

    @Test
    void corruptSafetensorsIsAClearError() throws Exception {
        Path bad = tmp.resolve("bad");
        RandomModels.write(bad, RandomModels.llama());
        Path st = bad.resolve("model.safetensors");
        byte[] all = Files.readAllBytes(st);
        Files.write(st, java.util.Arrays.copyOf(all, all.length / 2));
        Result r = run("inspect", bad.toString());
        assertEquals(1, r.code());
        assertTrue(r.err().startsWith("error: " + st + ": tensor '"), r.err());
        assertTrue(r.err().contains("outside the data section"), r.err());
        assertEquals(1, r.err().strip().lines().count(), "one line: " + r.err());
    }

    @Test
    void gpuWithoutGpuIsAClearError() {
        Result r = run("generate", model.toString(), "--prompt", "x", "--device", "gpu");
        assertEquals(1, r.code());
        assertTrue(r.err().contains("--device gpu: no GPU is visible"), r.err());
    }

    @Test
    void usageErrorExitsNonZero() {
        Result r = run("ppl", model.toString());
        assertEquals(2, r.code());
        assertEquals("error: --text FILE: missing, it is required (see lopper ppl --help)", r.err().strip());
    }

    @Test
    void everyCommandHasHelp() {
        for (String c : new String[] {"inspect", "ppl", "generate"}) {
            Result r = run(c, "--help");
            assertEquals(0, r.code());
            assertTrue(r.out().startsWith("Usage: lopper " + c), r.out());
        }
    }
}
