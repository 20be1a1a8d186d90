package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ExportCommandTest {
    @TempDir
    Path tmp;
    Path model;

    @BeforeEach
    void writeModel() throws Exception {
        model = tmp.resolve("model");
        RandomModels.write(model, RandomModels.llama());
    }

    private record Run(int code, String out, String err) {
    }

    private Run run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new ExportCommand());
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int code = cl.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    @Test
    void writesEachFormatAndPrintsFilesWithSizes() throws Exception {
        String[][] expected = {
                {"onnx", "model.onnx"}, {"onnx-kv", "model.onnx"}, {"torchscript", "model.pt"}, {"hf", "model.safetensors"}};
        for (String[] e : expected) {
            Path out = tmp.resolve("out-" + e[0]);
            Run r = run(model.toString(), "--format", e[0], "--out", out.toString());
            assertEquals(0, r.code(), e[0] + ": " + r.err());
            Path main = out.resolve(e[1]);
            assertTrue(Files.exists(main), e[0] + ": " + main + " missing");
            assertTrue(Files.exists(out.resolve("config.json")));
            assertTrue(Files.exists(out.resolve("tokenizer.json")), e[0] + ": tokenizer files travel along");
            assertTrue(r.out().contains(e[1]) && r.out().contains(Files.size(main) + " bytes"), r.out());
            assertTrue(r.out().contains("total"), r.out());
        }
        // the HF export loads back as a model
        try (ModelDir md = ModelDir.open(tmp.resolve("out-hf"))) {
            assertEquals(2, md.config().numLayers());
        }
    }

    @Test
    void jsonListsFilesAndExternalDataOption() throws Exception {
        Path out = tmp.resolve("onnx");
        Run r = run(model.toString(), "--format", "onnx", "--out", out.toString(), "--external-data", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        assertEquals("onnx", j.get("format").asText());
        long sum = 0;
        boolean data = false;
        for (JsonNode f : j.get("files")) {
            Path p = Path.of(f.get("path").asText());
            assertEquals(Files.size(p), f.get("bytes").asLong());
            sum += f.get("bytes").asLong();
            data |= p.getFileName().toString().equals("model.onnx.data");
        }
        assertTrue(data, "model.onnx.data expected with --external-data: " + r.out());
        assertEquals(sum, j.get("total_bytes").asLong());
    }

    @Test
    void replacesItsOwnEarlierExportOnlyWithOverwriteAndLeavesNoTemporaries() throws Exception {
        Path out = tmp.resolve("ts");
        assertEquals(0, run(model.toString(), "--format", "torchscript", "--out", out.toString()).code());
        Files.writeString(out.resolve("stale.txt"), "old");
        Run again = run(model.toString(), "--format", "torchscript", "--out", out.toString());
        assertEquals(1, again.code());
        assertTrue(again.err().contains("--overwrite"), again.err());
        assertTrue(Files.exists(out.resolve("stale.txt")), "a refused export must not touch the directory");
        // a file Lopper did not write is never deleted, also not with --overwrite (issue 27: a user's notes)
        Run overwrite = run(model.toString(), "--format", "torchscript", "--out", out.toString(), "--overwrite");
        assertEquals(1, overwrite.code());
        assertTrue(overwrite.err().contains("holds stale.txt, which Lopper did not write"), overwrite.err());
        assertTrue(Files.exists(out.resolve("stale.txt")));
        Files.delete(out.resolve("stale.txt"));
        assertEquals(0, run(model.toString(), "--format", "onnx", "--out", out.toString(), "--overwrite").code());
        assertFalse(Files.exists(out.resolve("model.pt")), "the old directory must be replaced, not merged");
        try (Stream<Path> s = Files.list(tmp)) {
            assertTrue(s.noneMatch(p -> p.getFileName().toString().startsWith(".")), "temporary directories left behind");
        }
    }

    @Test
    void badFormatOrModelFailsWithoutWriting() {
        Path out = tmp.resolve("never");
        Run r = run(model.toString(), "--format", "tflite", "--out", out.toString());
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("tflite") && r.err().contains("onnx-kv"), r.err());
        assertFalse(Files.exists(out));
        Run r2 = run(tmp.resolve("missing").toString(), "--format", "onnx", "--out", out.toString());
        assertNotEquals(0, r2.code());
        assertFalse(Files.exists(out));
    }
}
