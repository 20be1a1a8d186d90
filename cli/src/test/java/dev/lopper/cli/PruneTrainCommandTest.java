package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.lopper.training.job.JobDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper prune-train}, lopper prune's deprecated alias for efficientllm and bip, end to end: memory line, progress, outputs, --json, resume, the printed prune command, one-line refusals. */
class PruneTrainCommandTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path text;

    @BeforeAll
    static void setUp() throws Exception {
        model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama());
        text = tmp.resolve("train.txt");
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 300; i++) {
            sb.append("In the beginning God created the heaven and the earth. Verse ").append(i % 17).append(".\n");
        }
        Files.writeString(text, sb.toString());
    }

    private static String[] args(String method, Path out, String... extra) {
        List<String> a = new ArrayList<>(List.of("prune-train", model.toString(), "--method", method, "--ratio", "0.5", "--train-data",
                text.toString(), "--steps", "2", "--micro-batch", "2", "--accumulation", "1", "--train-seq-len", "16", "--eval-every", "2",
                "--val-windows", "2", "--out", out.toString()));
        a.addAll(List.of(extra));
        return a.toArray(String[]::new);
    }

    /** Runs the CLI with System.err captured too: lopper prune's progress goes there ({@code Progress.console}). */
    private static CliTest.Result runCapturingProgress(String... args) {
        String quiet = System.clearProperty("lopper.quiet");
        PrintStream saved = System.err;
        ByteArrayOutputStream progress = new ByteArrayOutputStream();
        try {
            System.setErr(new PrintStream(progress, true, StandardCharsets.UTF_8));
            CliTest.Result r = CliTest.run(args);
            return new CliTest.Result(r.code(), r.out(), r.err() + progress.toString(StandardCharsets.UTF_8));
        } finally {
            System.setErr(saved);
            if (quiet != null) {
                System.setProperty("lopper.quiet", quiet);
            }
        }
    }

    @Test
    void prunesWhileTrainingAndPrintsProgress() throws Exception {
        Path out = tmp.resolve("eff");
        CliTest.Result r = runCapturingProgress(args("efficientllm", out));
        assertEquals(0, r.code(), r.err());
        // the memory line, training progress and the cuts (lopper prune's schedule engine prints them)
        assertTrue(r.err().contains("trains every weight") && r.err().contains("MiB") && r.err().contains("train 2/2")
                && r.err().contains("pruned"), r.err());
        assertTrue(r.out().contains("model written to " + out), r.out());
        try (ModelDir d = ModelDir.open(out)) {
            assertTrue(d.config().layer(0).intermediateSize() < 96 || d.config().layer(1).intermediateSize() < 96);
        }
        Path work = JobDir.dirOf(out);
        assertTrue(Files.isRegularFile(work.resolve("curve.csv")) && Files.isRegularFile(out.resolve("lopper_plan.json")));
        CliTest.Result j = CliTest.run(args("bip", tmp.resolve("bip"), "--json"));
        assertEquals(0, j.code(), j.err());
        JsonNode n = new ObjectMapper().readTree(j.out());
        assertTrue(n.get("params_after").asLong() < n.get("params_before").asLong());
        assertTrue(n.get("achieved_ratio").asDouble() > 0.4, j.out());
        assertTrue(n.get("val_loss_after").isNumber(), j.out());
        // the same command again resumes: the run is finished, so nothing is redone and the model is the same
        CliTest.Result again = CliTest.run(args("bip", tmp.resolve("bip"), "--json"));
        assertEquals(0, again.code(), again.err());
        assertEquals(n.get("params_after"), new ObjectMapper().readTree(again.out()).get("params_after"));
    }

    @Test
    void isAnAliasThatPrintsTheEquivalentPruneCommand() throws Exception {
        Path out = tmp.resolve("alias");
        // the old spellings too (--data, --val, --seq-len), translated to prune's names
        CliTest.Result r = CliTest.run("prune-train", model.toString(), "--method", "bip", "--ratio", "0.5", "--data", text.toString(),
                "--val", text.toString(), "--steps", "2", "--micro-batch", "2", "--seq-len", "16", "--val-windows", "2",
                "--out", out.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        String expected = "lopper prune " + model + " --method bip --ratio 0.5 --train-data " + text + " --val-data " + text
                + " --steps 2 --micro-batch 2 --train-seq-len 16 --val-windows 2 --out " + out + " --json --seed 42";
        String line = r.err().lines().filter(l -> l.contains("deprecated")).findFirst().orElseThrow();
        assertTrue(line.endsWith("running the same as: " + expected), line);
        assertEquals(1, r.err().lines().filter(l -> l.contains("lopper prune ")).count(), r.err());
        // that command gives the same model (it is the same run: a rerun of it finds the run finished)
        String[] prune = expected.substring("lopper ".length()).split(" ");
        CliTest.Result p = CliTest.run(prune);
        assertEquals(0, p.code(), p.err());
        JsonNode a = new ObjectMapper().readTree(r.out());
        JsonNode b = new ObjectMapper().readTree(p.out());
        assertEquals(a.get("params_after"), b.get("params_after"));
        assertEquals(a.get("plan"), b.get("plan"));
    }

    @Test
    void lopperPruneHandsBothMethodsToTheScheduleEngine() throws Exception {
        Path out = tmp.resolve("engine-bip");
        CliTest.Result r = CliTest.run("prune", model.toString(), "--method", "bip", "--ratio", "0.5", "--train-data", text.toString(),
                "--steps", "2", "--micro-batch", "2", "--accumulation", "1", "--train-seq-len", "16", "--val-windows", "2",
                "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(Files.isRegularFile(out.resolve("lopper_plan.json")) && Files.isRegularFile(out.resolve("curve.csv")), r.out());
        try (ModelDir d = ModelDir.open(out)) {
            assertEquals(48, d.config().layer(0).intermediateSize());
        }
    }

    @Test
    void badInputIsOneLine() {
        CliTest.Result r = CliTest.run(args("magnitude", tmp.resolve("bad")));
        assertEquals(1, r.code());
        assertTrue(r.err().startsWith("error: --method magnitude: expected one of [efficientllm, bip]"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        CliTest.Result v = CliTest.run(args("bip", tmp.resolve("bad"), "--val-fraction", "1.5"));
        assertEquals(2, v.code()); // a usage error, before any work
        assertTrue(v.err().strip().startsWith("error: --val-fraction 1.5: expected a fraction in (0, 1) (see lopper prune-train --help)"),
                v.err());
    }
}
