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

/** {@code lopper prune --method efficientllm|bip} (pruning while training every weight) end to end: memory line, progress, outputs, --json, resume. */
class PruneWhileTrainingCommandTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path text;

    @BeforeAll
    static void setUp() throws Exception {
        model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama());
        text = tmp.resolve("train.txt");
        RandomModels.writeTrainingText(text, 300);
    }

    private static String[] args(String method, Path out, String... extra) {
        List<String> a = new ArrayList<>(List.of("prune", model.toString(), "--method", method, "--ratio", "0.5", "--train-data",
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
}
