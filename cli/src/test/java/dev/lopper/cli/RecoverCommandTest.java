package dev.lopper.cli;

import dev.lopper.training.job.JobDir;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper prune} then {@code lopper recover} end to end: outputs, resume, refusals. */
class RecoverCommandTest {
    @TempDir
    static Path tmp;
    static Path pruned;
    static Path text;

    @BeforeAll
    static void setUp() throws Exception {
        Path model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama().withHeads(4, 2).withLayers(3));
        text = tmp.resolve("train.txt");
        RandomModels.writeTrainingText(text, 300);
        pruned = tmp.resolve("pruned");
        // global allocation: layers end up with different shapes
        CliTest.Result p = CliTest.run("prune", model.toString(), "--ratio", "0.4", "--allocation", "global", "--out", pruned.toString());
        assertEquals(0, p.code(), p.err());
    }

    private static String[] recover(Path out, String... extra) {
        List<String> a = new java.util.ArrayList<>(List.of("recover", pruned.toString(), "--train-data", text.toString(), "--steps", "4",
                "--micro-batch", "2", "--accumulation", "1", "--train-seq-len", "32", "--eval-every", "2", "--checkpoint-every", "2",
                "--lr", "1e-2", "--out", out.toString()));
        a.addAll(List.of(extra));
        return a.toArray(String[]::new);
    }

    @Test
    void recoversWritesEverythingAndResumes() throws Exception {
        Path out = tmp.resolve("rec");
        // this test reads the progress line: the test run's -Dlopper.quiet=true would hide it
        String quiet = System.clearProperty("lopper.quiet");
        CliTest.Result r;
        try {
            r = CliTest.run(recover(out));
        } finally {
            if (quiet != null) {
                System.setProperty("lopper.quiet", quiet);
            }
        }
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("step 4/4") && r.err().contains("tok/s") && r.err().contains("ETA") && r.err().contains("val_loss"), r.err());
        assertTrue(r.out().contains("recovered") && r.out().contains("validation loss:"), r.out());
        // the one job layout: the merged model in OUT, the adapter, checkpoints and curve in OUT.job/
        Path job = JobDir.dirOf(out);
        JsonNode cfg = new ObjectMapper().readTree(job.resolve("adapter/adapter_config.json").toFile());
        assertEquals("LORA", cfg.get("peft_type").asText());
        assertEquals("CAUSAL_LM", cfg.get("task_type").asText());
        assertEquals(8, cfg.get("r").asInt());
        assertTrue(Files.isRegularFile(job.resolve("adapter/adapter_model.safetensors")));
        List<String> csv = Files.readAllLines(job.resolve("curve.csv"));
        assertEquals("step,train_loss,val_loss,lr,params", csv.get(0));
        assertEquals(6, csv.size(), csv.toString()); // header, step 0 (before training), steps 1..4
        assertEquals(csv, Files.readAllLines(out.resolve("curve.csv")), "the curve beside the model");
        byte[] png = Files.readAllBytes(job.resolve("curve.png"));
        assertArrayEquals(new byte[] {(byte) 0x89, 'P', 'N', 'G'}, java.util.Arrays.copyOf(png, 4));
        try (ModelDir a = ModelDir.open(pruned); ModelDir b = ModelDir.open(out)) {
            assertEquals(a.config().layers(), b.config().layers()); // per-layer pruned shapes kept
            assertFalse(a.config().isUniform());
        }
        System.setProperty("lopper.quiet", "true"); // ppl's progress bar would print to the build log
        CliTest.Result ppl;
        try {
            ppl = CliTest.run("ppl", out.toString(), "--text", text.toString(), "--seq-len", "32");
        } finally {
            System.clearProperty("lopper.quiet");
        }
        assertEquals(0, ppl.code(), ppl.err());

        // the same command again: continues from the last checkpoint (here: the end) and rewrites the outputs
        CliTest.Result again = CliTest.run(recover(out));
        assertEquals(0, again.code(), again.err());
        assertTrue(again.err().contains("resuming from"), again.err());
        assertTrue(again.out().contains("resumed from step 4"), again.out());

        // other options: refused, nothing changed
        CliTest.Result other = CliTest.run(recover(out, "--lora-rank", "4"));
        assertEquals(1, other.code());
        assertTrue(other.err().contains("lora.rank 8 (now 4)") && other.err().lines().count() == 1, other.err());

        // --overwrite starts over
        CliTest.Result fresh = CliTest.run(recover(out, "--overwrite", "--json"));
        assertEquals(0, fresh.code(), fresh.err());
        assertEquals(0, new ObjectMapper().readTree(fresh.out()).get("resumed_from").asInt());
    }

    @Test
    void streamedRunWritesAMergedModel() throws Exception {
        Path out = tmp.resolve("streamed");
        CliTest.Result r = CliTest.run(recover(out, "--stream", "--json"));
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        assertEquals(4, j.get("steps").asInt());
        assertTrue(Files.isRegularFile(out.resolve("config.json")));
    }

    @Test
    void refusesADirectoryLopperDidNotWrite() throws Exception {
        Path out = tmp.resolve("users");
        Files.createDirectories(out);
        Files.writeString(out.resolve("notes.txt"), "mine");
        CliTest.Result r = CliTest.run(recover(out, "--overwrite"));
        assertEquals(1, r.code());
        assertTrue(r.err().contains("Lopper did not write"), r.err());
        assertEquals("mine", Files.readString(out.resolve("notes.txt")));
        CliTest.Result missing = CliTest.run("recover", pruned.toString(), "--train-data", tmp.resolve("nope.txt").toString(), "--steps", "1",
                "--out", tmp.resolve("x").toString());
        assertEquals(1, missing.code());
        assertTrue(missing.err().contains("does not exist"), missing.err());
    }
}
