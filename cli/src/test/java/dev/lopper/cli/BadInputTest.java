package dev.lopper.cli;

import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Bad input, as a table (issue 27): every row is a command line that must end, before any work, in exit code 2
 * (a usage error: an option unknown, missing, not of its type or out of range) or 1 (a bad file), with one line on
 * stderr that starts as the row says, no Java exception text, nothing on stdout, and no file written or changed.
 */
class BadInputTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path text;
    static Path binary;
    static Path emptyChoice;

    /** One bad command line: its arguments ({@code M} is the model, {@code T} a text, {@code O} an output), exit code, error start. */
    record Row(int code, String err, String... args) {
    }

    static final List<Row> ROWS = List.of(
            // picocli's own usage errors, as one line
            new Row(2, "error: --ratio abc: expected a number (see lopper prune --help)", "prune", "M", "--ratio", "abc"),
            new Row(2, "error: --steps N: missing, it is required (see lopper recover --help)", "recover", "M", "--train-data", "T", "--out", "O"),
            new Row(2, "error: --foo: unknown option of lopper prune", "prune", "M", "--ratio", "0.2", "--foo"),
            new Row(2, "error: --samples x: expected a whole number", "prune", "M", "--ratio", "0.2", "--samples", "x"),
            new Row(2, "error: --ratios x: expected comma-separated numbers", "sweep", "M", "--methods", "magnitude", "--ratios", "0.2,x", "--out", "O"),
            // required before any work
            new Row(2, "error: --ratio R: missing; expected the fraction", "prune", "M", "--out", "O"),
            new Row(2, "error: --train-data FILE: missing, it is required", "recover", "M", "--steps", "1", "--out", "O"),
            new Row(2, "error: --method lora-prune trains while it prunes: --train-data FILE is required", "prune", "M", "--method", "lora-prune",
                    "--ratio", "0.2", "--steps", "5", "--out", "O"),
            new Row(2, "error: --steps N: missing; --method efficientllm trains while it prunes: give its optimizer steps", "prune", "M",
                    "--method", "efficientllm", "--ratio", "0.5", "--train-data", "T", "--out", "O"),
            new Row(2, "error: --iterative with --train-steps-per-step trains between prune steps: --train-data FILE is required", "prune", "M",
                    "--ratio", "0.2", "--iterative", "2", "--train-steps-per-step", "1", "--out", "O"),
            // ranges
            new Row(2, "error: --iterative 0: expected a whole number of at least 1 (see lopper prune --help)", "prune", "M", "--ratio", "0.2", "--iterative", "0"),
            new Row(2, "error: --iterative -2: expected a whole number of at least 1", "prune", "M", "--ratio", "0.2", "--iterative", "-2"),
            new Row(2, "error: --iterative-steps 0: expected a whole number of at least 1", "prune", "M", "--ratio", "0.2", "--iterative-steps", "0"),
            new Row(2, "error: --limit -1: expected a whole number of at least 0 (see lopper eval --help)", "eval", "M", "--limit", "-1"),
            new Row(2, "error: --seq-len 0: expected a whole number of at least 2 (tokens)", "eval", "M", "--text", "T", "--seq-len", "0"),
            new Row(2, "error: --window 0: expected a whole number of at least 2 (tokens)", "eval", "M", "--text", "T", "--window", "0"),
            new Row(2, "error: --stride 0: expected a whole number of at least 1", "eval", "M", "--text", "T", "--stride", "0"),
            new Row(2, "error: --chunk-tokens 0: expected a whole number of at least 1", "prune", "M", "--ratio", "0.2", "--chunk-tokens", "0"),
            new Row(2, "error: --device tpu: expected cpu, gpu or gpu:N (see lopper inspect --help)", "inspect", "M", "--device", "tpu"),
            new Row(2, "error: --threads -3: expected a whole number of at least 1", "inspect", "M", "--threads", "-3"),
            new Row(2, "error: --batch 0: expected a whole number of at least 1 (see lopper ppl --help)", "ppl", "M", "--text", "T", "--batch", "0"),
            new Row(2, "error: --max-tokens 0: expected a whole number of at least 1", "generate", "M", "--prompt", "x", "--max-tokens", "0"),
            new Row(2, "error: --ratio 1.5: expected a fraction in [0, 1)", "prune", "M", "--ratio", "1.5", "--out", "O"),
            new Row(2, "error: --head-ratio 2: expected a fraction in [0, 1)", "prune", "M", "--ratio", "0.2", "--head-ratio", "2"),
            new Row(2, "error: --samples 0: expected a whole number of at least 1", "prune", "M", "--method", "flap", "--ratio", "0.2", "--calib", "T",
                    "--samples", "0"),
            new Row(2, "error: --seq-len 100000: expected at most 46340 tokens", "prune", "M",
                    "--method", "flap", "--ratio", "0.2", "--calib", "T", "--seq-len", "100000", "--samples", "2", "--out", "O"),
            new Row(2, "error: --seq-len 300: expected at most the model's context length (max_position_embeddings 256)", "prune", "M",
                    "--method", "flap", "--ratio", "0.2", "--calib", "T", "--seq-len", "300", "--samples", "2", "--out", "O"),
            new Row(2, "error: --seq-len 100000: expected at most 46340 tokens", "ppl", "M", "--text", "T", "--seq-len", "100000"),
            new Row(2, "error: --val-fraction 1.5: expected a fraction in (0, 1) (see lopper recover --help)", "recover", "M", "--train-data", "T",
                    "--val-fraction", "1.5", "--steps", "1", "--out", "O"),
            new Row(2, "error: --val-fraction 1.5: expected a fraction in (0, 1) (see lopper prune --help)", "prune", "M", "--method", "efficientllm",
                    "--ratio", "0.5", "--train-data", "T", "--steps", "1", "--val-fraction", "1.5", "--out", "O"),
            new Row(2, "error: prune-train: no longer a command; use lopper prune MODEL --method efficientllm|bip (see lopper --help)",
                    "prune-train", "M", "--method", "bip", "--ratio", "0.5", "--train-data", "T", "--steps", "1", "--out", "O"),
            new Row(2, "error: --steps 0: expected a whole number of at least 1", "recover", "M", "--train-data", "T", "--steps", "0", "--out", "O"),
            new Row(2, "error: --lr -1: expected a number above 0", "recover", "M", "--train-data", "T", "--steps", "1", "--lr", "-1", "--out", "O"),
            new Row(2, "error: --keep-first 2: expected fewer than the model's 2 layers in all", "prune", "M", "--ratio", "0.2", "--keep-first", "2",
                    "--out", "O"),
            new Row(2, "error: --keep-first 1 with --keep-last 1: expected fewer than the model's 2 layers", "prune", "M", "--ratio", "0.2",
                    "--keep-first", "1", "--keep-last", "1", "--out", "O"),
            new Row(2, "error: --ratios 1.5: expected a fraction in [0, 1) (see lopper sweep --help)", "sweep", "M", "--methods", "magnitude",
                    "--ratios", "0.2,1.5", "--out", "O"),
            new Row(2, "error: --methods foo: expected one-shot criteria from angular, block-influence, cfsp, flap, gblm, layer-loss, llm-pruner, magnitude, "
                    + "minitron, wanda-sp", "sweep", "M",
                    "--methods", "magnitude,foo", "--ratios", "0.2", "--out", "O"),
            new Row(2, "error: --methods wanda-sp: needs calibration data; give --calib FILE", "sweep", "M", "--methods", "magnitude,wanda-sp",
                    "--ratios", "0.2", "--out", "O"),
            // --method: every method, as --help lists them
            new Row(2, "error: --method foo: expected one of adapt-pruner, angular, bip, block-influence, cfsp, compresso, efficientllm, flap, gblm, "
                    + "layer-loss, llm-pruner, lora-prune, magnitude, minitron, wanda-sp (see lopper prune --help)", "prune", "M", "--method", "foo", "--ratio", "0.2"),
            new Row(2, "error: --reg-lr is an option of --method compresso, not of flap", "prune", "M", "--method", "flap", "--ratio", "0.2",
                    "--reg-lr", "0.5"),
            // options of another kind of run, never ignored
            new Row(2, "error: --steps: only with a training-aware --method (adapt-pruner, bip, compresso, efficientllm, lora-prune); after a "
                    + "one-shot prune, --recover-steps N trains", "prune", "M", "--ratio", "0.2", "--steps", "5", "--out", "O"),
            new Row(2, "error: --steps: only with a training-aware --method", "prune", "M", "--ratio", "0.2", "--iterative", "2",
                    "--train-steps-per-step", "2", "--train-data", "T", "--steps", "5", "--out", "O"),
            new Row(2, "error: --train-steps-per-step: only with --iterative N (N > 1) or --method adapt-pruner; a one-shot prune trains nothing",
                    "prune", "M", "--ratio", "0.2", "--train-steps-per-step", "5", "--out", "O"),
            new Row(2, "error: --train-steps-per-step: only with --iterative N (N > 1) or --method adapt-pruner; --method lora-prune trains --steps N",
                    "prune", "M", "--method", "lora-prune", "--ratio", "0.2", "--train-data", "T", "--steps", "5", "--train-steps-per-step", "5", "--out", "O"),
            // names from a list, each checked against its registry
            new Row(2, "error: --allocation foo: expected one of", "prune", "M", "--ratio", "0.2", "--allocation", "foo", "--out", "O"),
            new Row(2, "error: --head-unit foo: expected kv-group or query-head", "prune", "M", "--ratio", "0.2", "--head-unit", "foo"),
            new Row(2, "error: --targets foo: expected heads, channels, layers, hidden, sublayers", "prune", "M", "--ratio", "0.2", "--targets", "heads,foo"),
            new Row(2, "error: --norm l3", "prune", "M", "--ratio", "0.2", "--norm", "l3", "--out", "O"),
            new Row(2, "error: --flap-metric foo", "prune", "M", "--method", "flap", "--ratio", "0.2", "--calib", "T", "--flap-metric", "foo"),
            new Row(2, "error: --wanda-order foo", "prune", "M", "--method", "wanda-sp", "--ratio", "0.2", "--calib", "T", "--wanda-order", "foo"),
            new Row(2, "error: --merged-dtype f8: expected f32, bf16, f16 or keep", "recover", "M", "--train-data", "T", "--steps", "1",
                    "--merged-dtype", "f8", "--out", "O"),
            new Row(2, "error: --output-dtype f8: expected f32, bf16, f16 or keep", "prune", "M", "--method", "efficientllm", "--ratio", "0.5",
                    "--train-data", "T", "--steps", "1", "--output-dtype", "f8", "--out", "O"),
            new Row(2, "error: --ppl-preset foo: unknown; expected llm-pruner, wanda or flap", "eval", "M", "--text", "T", "--ppl-preset", "foo"),
            new Row(2, "error: --format foo: expected onnx, onnx-kv, torchscript, hf or gguf (see lopper export --help)", "export", "M",
                    "--format", "foo", "--out", "O"),
            new Row(2, "error: --dtype q4: expected f32, f16, bf16", "export", "M", "--format", "gguf", "--dtype", "q4", "--out", "O"),
            new Row(2, "error: --merged-dtype: only with --recover-steps N", "prune", "M", "--method", "efficientllm", "--ratio", "0.5",
                    "--train-data", "T", "--steps", "1", "--merged-dtype", "bf16", "--out", "O"),
            new Row(2, "error: --task kjv-cloze: fixtures/text/kjv-test.txt does not exist here (kjv-cloze reads the fixture's test split from "
                    + "the repository root); run from there or give kjv-cloze=FILE", "eval", "M", "--task", "kjv-cloze"),
            new Row(2, "error: --task generic=nowhere.jsonl: nowhere.jsonl does not exist; expected a task file", "eval", "M", "--task",
                    "generic=nowhere.jsonl"),
            // bad files (exit code 1), still before anything is written
            new Row(1, "error: --train-data B: is not UTF-8 text", "recover", "M", "--train-data", "B", "--steps", "1", "--out", "O"),
            new Row(1, "error: E: line 1 (generic): choice 1 is empty; expected text to score", "eval", "M", "--task", "generic=E", "--no-speed"));

    @BeforeAll
    static void files() throws IOException {
        model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama()); // 2 layers, max_position_embeddings 256
        text = tmp.resolve("t.txt");
        Files.writeString(text, "In the beginning God created the heaven and the earth. ".repeat(200));
        binary = tmp.resolve("bin.bin");
        Files.write(binary, new byte[] {(byte) 0xff, (byte) 0xfe, 0, 1, (byte) 0xc3, 0x28, (byte) 0x80});
        emptyChoice = tmp.resolve("empty-choice.jsonl");
        Files.writeString(emptyChoice, "{\"context\": \"In the beginning\", \"choices\": [\"God\", \"\"], \"label\": 0}\n");
    }

    private static String[] args(Row row) {
        Map<String, String> sub = Map.of("M", model.toString(), "T", text.toString(), "O", tmp.resolve("out").toString(),
                "B", binary.toString(), "E", emptyChoice.toString());
        return Stream.of(row.args()).map(a -> sub.getOrDefault(a, a.replace("=E", "=" + emptyChoice))).toArray(String[]::new);
    }

    private static String substituted(String err) {
        return err.replace("error: B:", "error: " + binary + ":").replace("--train-data B:", "--train-data " + binary + ":")
                .replace("error: E:", "error: " + emptyChoice + ":");
    }

    @TestFactory
    Stream<DynamicTest> everyBadInputIsOneLineBeforeAnyWork() {
        return ROWS.stream().map(row -> DynamicTest.dynamicTest(String.join(" ", row.args()), () -> {
            Map<String, String> before = snapshot();
            CliTest.Result r = CliTest.run(args(row));
            String err = r.err().strip();
            assertEquals(row.code(), r.code(), err);
            assertTrue(err.startsWith(substituted(row.err())), "expected " + row.err() + "\n   got " + err);
            assertEquals(1, err.lines().count(), "one line: " + err);
            assertFalse(err.contains("Exception") || err.contains("java.") || err.contains("\tat "), "no Java exception text: " + err);
            assertEquals("", r.out(), "nothing on stdout");
            assertEquals(before, snapshot(), "no file written or changed");
        }));
    }

    @Test
    void theTableCoversTheIssuesCases() {
        assertTrue(ROWS.size() >= 50, "rows: " + ROWS.size());
    }

    @Test
    void helpHasNoPicocliWarningsAndTheCommandListEndsSentences() {
        for (String c : new String[] {"prune", "recover", "sweep", "eval", "export", "ppl", "inspect", "generate", "compare"}) {
            CliTest.Result r = CliTest.run(c, "--help");
            assertEquals(0, r.code(), c);
            assertFalse((r.out() + r.err()).contains("picocli WARN"), c + ": " + r.err());
        }
        CliTest.Result top = CliTest.run("--help");
        List<String> cut = new ArrayList<>();
        String entry = "";
        for (String line : top.out().substring(top.out().indexOf("Commands:")).lines().skip(1).toList()) {
            if (line.startsWith("  ") && !line.startsWith("   ")) {
                if (!entry.isEmpty() && !entry.endsWith(".")) {
                    cut.add(entry);
                }
                entry = line.strip();
            } else {
                entry += " " + line.strip();
            }
        }
        if (!entry.endsWith(".")) {
            cut.add(entry);
        }
        assertTrue(cut.isEmpty(), "descriptions cut mid-sentence in lopper --help: " + cut);
    }

    @Test
    void aRunThatFailedOnBadDataLeavesNothingAndTheCorrectedCommandRuns() throws IOException {
        Path out = tmp.resolve("retry").resolve("r");
        Files.createDirectories(out.getParent());
        CliTest.Result bad = CliTest.run("recover", model.toString(), "--train-data", binary.toString(), "--steps", "1", "--out", out.toString());
        assertEquals(1, bad.code(), bad.err());
        try (Stream<Path> s = Files.list(out.getParent())) {
            assertEquals(List.of(), s.filter(p -> !p.getFileName().toString().startsWith(".")).toList(), "nothing left behind");
        }
        CliTest.Result good = CliTest.run("recover", model.toString(), "--train-data", text.toString(), "--train-seq-len", "32",
                "--micro-batch", "1", "--accumulation", "1", "--val-windows", "2", "--steps", "1", "--out", out.toString());
        assertEquals(0, good.code(), good.err());
        assertTrue(Files.isRegularFile(out.resolve("config.json")));
    }

    @Test
    void overwriteReplacesOnlyWhatLopperWrote() throws IOException {
        Path out = tmp.resolve("ow").resolve("p");
        CliTest.Result first = CliTest.run("prune", model.toString(), "--ratio", "0.2", "--out", out.toString());
        assertEquals(0, first.code(), first.err());
        Files.writeString(out.resolve("MYNOTES.md"), "mine");
        Map<String, String> before = snapshot();
        CliTest.Result again = CliTest.run("prune", model.toString(), "--ratio", "0.5", "--out", out.toString(), "--overwrite");
        assertEquals(1, again.code(), again.out());
        assertEquals("error: --out " + out + ": holds MYNOTES.md, which Lopper did not write; --overwrite replaces only Lopper's files: "
                + "move it away or choose a new directory", again.err().strip());
        assertEquals(before, snapshot(), "nothing replaced");
        Files.delete(out.resolve("MYNOTES.md"));
        CliTest.Result moved = CliTest.run("prune", model.toString(), "--ratio", "0.5", "--out", out.toString(), "--overwrite");
        assertEquals(0, moved.code(), moved.err());
    }

    /** Every file under the temporary folder with its size and modification time. */
    private static Map<String, String> snapshot() throws IOException {
        Map<String, String> m = new TreeMap<>();
        try (Stream<Path> s = Files.walk(tmp)) {
            for (Path p : s.toList()) {
                m.put(tmp.relativize(p).toString(), Files.isDirectory(p) ? "dir" : Files.size(p) + "@" + Files.getLastModifiedTime(p).toMillis());
            }
        }
        return m;
    }
}
