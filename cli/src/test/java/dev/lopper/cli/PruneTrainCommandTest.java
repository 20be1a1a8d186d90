package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper prune-train} end to end: memory line, progress line, outputs, --json, one-line refusals. */
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
                text.toString(), "--steps", "2", "--micro-batch", "2", "--accumulation", "1", "--seq-len", "16", "--eval-every", "2",
                "--val-windows", "2", "--out", out.toString()));
        a.addAll(List.of(extra));
        return a.toArray(String[]::new);
    }

    @Test
    void prunesWhileTrainingAndPrintsProgress() throws Exception {
        Path out = tmp.resolve("eff");
        String quiet = System.clearProperty("lopper.quiet"); // this test reads the progress line
        CliTest.Result r;
        try {
            r = CliTest.run(args("efficientllm", out));
        } finally {
            if (quiet != null) {
                System.setProperty("lopper.quiet", quiet);
            }
        }
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("full training holds") && r.err().contains("MiB") && r.err().contains("step 2/2")
                && r.err().contains("pruned:"), r.err());
        assertTrue(r.out().contains("pruned model:"), r.out());
        try (ModelDir d = ModelDir.open(out.resolve("pruned"))) {
            assertTrue(d.config().layer(0).intermediateSize() < 96 || d.config().layer(1).intermediateSize() < 96);
        }
        assertTrue(Files.isRegularFile(out.resolve("size.csv")) && Files.isRegularFile(out.resolve("pruned/lopper_plan.json")));
        CliTest.Result j = CliTest.run(args("bip", tmp.resolve("bip"), "--json"));
        assertEquals(0, j.code(), j.err());
        JsonNode n = new ObjectMapper().readTree(j.out());
        assertTrue(n.get("params_after").asLong() < n.get("params_before").asLong());
        assertTrue(n.get("achieved_ratio").asDouble() > 0.4, j.out());
    }

    @Test
    void lopperPruneHandsBothMethodsToTheScheduleEngine() throws Exception {
        Path out = tmp.resolve("engine-bip");
        CliTest.Result r = CliTest.run("prune", model.toString(), "--method", "bip", "--ratio", "0.5", "--train-data", text.toString(),
                "--steps", "2", "--micro-batch", "2", "--accumulation", "1", "--train-seq-len", "16", "--val-windows", "2",
                "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(Files.isRegularFile(out.resolve("lopper_plan.json")) && Files.isRegularFile(out.resolve("schedule.csv")), r.out());
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
    }
}
