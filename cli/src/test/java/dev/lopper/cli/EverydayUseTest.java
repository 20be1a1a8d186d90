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

    @Test
    void longTrainingStepsReportProgressInside() {
        // every micro-batch once the progress interval (5 s) passed: here 0 s, so each one reports
        System.setProperty("lopper.progress.seconds", "0");
        String quiet = System.getProperty("lopper.quiet");
        System.setProperty("lopper.quiet", "false"); // the test runs set it: no progress lines
        try {
            CliTest.Result r = CliTest.run("recover", model.toString(), "--train-data", text.toString(), "--train-seq-len", "16",
                    "--micro-batch", "1", "--accumulation", "3", "--val-windows", "1", "--steps", "2", "--out", tmp.resolve("r").toString());
            assertEquals(0, r.code(), r.err());
            assertTrue(r.err().contains("step 1  micro-batch 1/3") && r.err().contains("step 2  micro-batch 2/3"), r.err());
            assertTrue(r.err().lines().filter(l -> l.contains("micro-batch")).allMatch(l -> l.contains("tok/s  ETA ")), r.err());
        } finally {
            System.clearProperty("lopper.progress.seconds");
            if (quiet != null) {
                System.setProperty("lopper.quiet", quiet);
            }
        }
    }

    @Test
    void pplReadsADirectoryAsEvalDoes() throws Exception {
        Path dir = tmp.resolve("texts");
        Files.createDirectories(dir);
        Files.copy(text, dir.resolve("a.txt"));
        CliTest.Result r = CliTest.run("ppl", model.toString(), "--text", dir.toString(), "--seq-len", "64");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("perplexity: "), r.out());
    }

    @Test
    void oneExampleHasNoStandardErrorAndSaysSo() throws Exception {
        Path task = tmp.resolve("one.jsonl");
        Files.writeString(task, "{\"context\": \"In the beginning\", \"choices\": [\"God\", \"the earth\"], \"label\": 0}\n");
        Path report = tmp.resolve("report.json");
        CliTest.Result r = CliTest.run("eval", model.toString(), "--task", "generic=" + task, "--no-speed", "--out", report.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("± n/a (n=1)"), r.out());
        JsonNode j = new ObjectMapper().readTree(report.toFile());
        JsonNode task0 = j.findValue("acc_stderr");
        assertTrue(task0 != null && task0.isNull(), "acc_stderr of one example: null, not \"NaN\": " + j);
        CliTest.Result c = CliTest.run("compare", report.toString());
        assertEquals(0, c.code(), c.err());
        assertTrue(c.out().contains("n/a"), c.out());
    }

    @Test
    void aModelStockTransformersCannotLoadSaysWhatLoadsIt() {
        Path flap = tmp.resolve("flap");
        CliTest.Result r = CliTest.run("prune", model.toString(), "--method", "flap", "--ratio", "0.3", "--calib", text.toString(),
                "--samples", "4", "--seq-len", "16", "--out", flap.toString());
        assertEquals(0, r.code(), r.err());
        java.util.List<String> notes = r.err().lines().filter(l -> l.startsWith("note: ")).toList();
        assertEquals(1, notes.size(), r.err());
        assertTrue(notes.get(0).startsWith("note: " + flap + " has per-layer shapes (lopper_layers) and o_proj/down_proj biases: "
                + "stock HF transformers and vLLM cannot load it; Lopper, and its gguf (llama.cpp), onnx and torchscript exports, do"), notes.get(0));
        CliTest.Result hf = CliTest.run("export", flap.toString(), "--format", "hf", "--out", tmp.resolve("flap-hf").toString());
        assertEquals(0, hf.code(), hf.err());
        assertTrue(hf.err().contains("note: " + tmp.resolve("flap-hf") + " has per-layer shapes"), hf.err());
        CliTest.Result onnx = CliTest.run("export", flap.toString(), "--format", "onnx", "--out", tmp.resolve("flap-onnx").toString());
        assertEquals(0, onnx.code(), onnx.err());
        assertFalse(onnx.err().contains("note: "), "an ONNX export loads in ONNX Runtime: " + onnx.err());
        CliTest.Result uniform = CliTest.run("prune", model.toString(), "--method", "magnitude", "--ratio", "0.3", "--out",
                tmp.resolve("mag").toString());
        assertEquals(0, uniform.code(), uniform.err());
        assertFalse(uniform.err().contains("note: "), uniform.err());
    }

    /** The CLI with System.err captured too (lopper prune's progress goes there) and progress lines on. */
    private static CliTest.Result runWithProgress(String... args) {
        String quiet = System.clearProperty("lopper.quiet");
        java.io.PrintStream saved = System.err;
        java.io.ByteArrayOutputStream progress = new java.io.ByteArrayOutputStream();
        try {
            System.setErr(new java.io.PrintStream(progress, true, java.nio.charset.StandardCharsets.UTF_8));
            CliTest.Result r = CliTest.run(args);
            return new CliTest.Result(r.code(), r.out(), r.err() + progress.toString(java.nio.charset.StandardCharsets.UTF_8));
        } finally {
            System.setErr(saved);
            if (quiet != null) {
                System.setProperty("lopper.quiet", quiet);
            }
        }
    }

    @Test
    void trainedOutputsKeepTheInputsDtypeAndSaySo() throws Exception {
        Path bf16 = tmp.resolve("bf16");
        RandomModels.write(bf16, RandomModels.llama().withDtype(ai.djl.ndarray.types.DataType.BFLOAT16));
        String[] common = {"prune", bf16.toString(), "--method", "efficientllm", "--ratio", "0.5", "--train-data", text.toString(),
                "--steps", "1", "--micro-batch", "1", "--accumulation", "1", "--train-seq-len", "16", "--val-windows", "1"};
        Path kept = tmp.resolve("kept");
        CliTest.Result r = runWithProgress(concat(common, "--out", kept.toString()));
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("model written as bf16 (the input's dtype; --output-dtype f32|bf16|f16 to change)"), r.err());
        assertEquals("bf16", RecoverCommand.dtypeOf(kept));
        Path f32 = tmp.resolve("f32");
        CliTest.Result asked = runWithProgress(concat(common, "--output-dtype", "f32", "--out", f32.toString()));
        assertEquals(0, asked.code(), asked.err());
        assertTrue(asked.err().contains("model written as f32 (--output-dtype)"), asked.err());
        assertEquals("f32", RecoverCommand.dtypeOf(f32));
        // recover merges into the input's dtype too, and says which (and --val-windows 0 trains without validation)
        Path rec = tmp.resolve("rec");
        CliTest.Result rr = CliTest.run("recover", kept.toString(), "--train-data", text.toString(), "--steps", "1", "--micro-batch", "1",
                "--accumulation", "1", "--train-seq-len", "16", "--val-windows", "0", "--out", rec.toString());
        assertEquals(0, rr.code(), rr.err());
        assertTrue(rr.out().contains("merged model: " + rec + " (bf16, the input's dtype; --merged-dtype f32|bf16|f16 to change)"), rr.out());
        // a one-shot prune refuses --output-dtype (it keeps the input's dtype), in one line
        CliTest.Result one = CliTest.run("prune", bf16.toString(), "--ratio", "0.2", "--output-dtype", "f32", "--out", tmp.resolve("x").toString());
        assertEquals(2, one.code());
        assertTrue(one.err().startsWith("error: --output-dtype: only with a training-aware --method or --iterative N"), one.err());
    }

    private static String[] concat(String[] a, String... b) {
        String[] r = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }
}
