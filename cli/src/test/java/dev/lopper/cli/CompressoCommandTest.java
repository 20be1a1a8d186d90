package dev.lopper.cli;

import dev.lopper.training.job.Compresso;
import dev.lopper.training.method.CompressoOptions;

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

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper prune --method compresso} end to end: a plain pruned model other commands read, resume, refusals. */
class CompressoCommandTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path text;

    @BeforeAll
    static void setUp() throws Exception {
        model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama().withHeads(4, 2));
        text = tmp.resolve("train.txt");
        RandomModels.writeTrainingText(text, 200);
    }

    private static String[] compresso(Path out, String... extra) {
        // a large --reg-lr so that a few steps close some masks
        List<String> a = new java.util.ArrayList<>(List.of("prune", model.toString(), "--method", "compresso", "--ratio", "0.5",
                "--train-data", text.toString(), "--steps", "6", "--train-seq-len", "16", "--reg-lr", "2", "--checkpoint-every", "2",
                "--seed", "1", "--out", out.toString()));
        a.addAll(List.of(extra));
        return a.toArray(String[]::new);
    }

    @Test
    void prunesOnTheEngineWritesAPlainModelAndResumes() throws Exception {
        Path out = tmp.resolve("c");
        CliTest.Result r = CliTest.run(compresso(out));
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("pruned") && r.out().contains("compresso (scheduled)"), r.out());
        // the one job layout: the plain model and its plan in --out with the curve, the work in OUT.job/
        Path work = tmp.resolve("c.job");
        List<String> csv = Files.readAllLines(work.resolve("curve.csv"));
        assertEquals("step,train_loss,val_loss,lr,params,expected_sparsity,lagrangian,lambda_1,lambda_2,target_sparsity", csv.get(0));
        assertEquals(7, csv.size(), "a header and one row per training step");
        assertTrue(Files.isRegularFile(work.resolve("curve.png")));
        assertTrue(Files.isDirectory(work.resolve("checkpoints")));
        assertEquals(csv, Files.readAllLines(out.resolve("curve.csv")));
        assertTrue(Files.isRegularFile(out.resolve("curve.png")));
        JsonNode plan = new ObjectMapper().readTree(out.resolve("lopper_plan.json").toFile());
        assertEquals("compresso", plan.get("criterion").asText());
        // Compresso's official settings where none were given (CompressoOptions.defaults), the user's where given
        JsonNode opts = plan.get("criterionOptions");
        assertEquals(2.0, opts.get("regLr").asDouble(), "--reg-lr given");
        assertEquals(5e-5, opts.get("loraLr").asDouble(), "the official LoRA learning rate");
        assertEquals(8, opts.get("lora").get("rank").asInt());
        assertEquals(8.0, opts.get("lora").get("alpha").asDouble(), "the official alpha 8, not LoRAPrune's 16");
        assertEquals(16, opts.get("seqLen").asInt(), "--train-seq-len given");
        assertEquals(1, opts.get("accumulation").asInt(), "the official batch, not LoRAPrune's 32 accumulation");
        try (ModelDir d = ModelDir.open(out)) {
            assertEquals(2, d.config().numLayers());
        }
        CliTest.Result ppl = CliTest.run("ppl", out.toString(), "--text", text.toString(), "--seq-len", "16");
        assertEquals(0, ppl.code(), ppl.err());
        // the same command again: the finished run's checkpoint is found, nothing is retrained, the same model is written
        byte[] before = Files.readAllBytes(out.resolve("model.safetensors"));
        CliTest.Result again = CliTest.run(compresso(out, "--json"));
        assertEquals(0, again.code(), again.err());
        assertTrue(java.util.Arrays.equals(before, Files.readAllBytes(out.resolve("model.safetensors"))), "same result on resume");
        JsonNode j = new ObjectMapper().readTree(again.out());
        assertEquals("compresso", j.get("method").asText());
        assertEquals(6, j.get("resumed_after_step").asInt(), "resumed from the last checkpoint (step 6)");
        assertTrue(j.get("params_after").asLong() <= j.get("params_before").asLong());
    }

    @Test
    void neverOverwritesAUsersDirectory() throws Exception {
        Path out = tmp.resolve("mine");
        Files.createDirectories(out);
        Files.writeString(out.resolve("notes.txt"), "keep me");
        CliTest.Result r = CliTest.run(compresso(out));
        assertEquals(1, r.code());
        assertTrue(r.err().contains("--out") && r.err().lines().count() == 1, r.err());
        assertEquals("keep me", Files.readString(out.resolve("notes.txt")));
        assertTrue(!Files.exists(tmp.resolve("mine.job")), "no job directory written");
    }

    @Test
    void refusesCompressoOptionsForOtherMethods() {
        CliTest.Result r = CliTest.run("prune", model.toString(), "--method", "magnitude", "--ratio", "0.3", "--reg-lr", "1",
                "--out", tmp.resolve("y").toString());
        assertEquals(2, r.code()); // a usage error (Validation), before any work
        assertTrue(r.err().contains("--reg-lr") && r.err().contains("compresso"), r.err());
    }

    @Test
    void refusesMissingTrainingData() {
        CliTest.Result r = CliTest.run("prune", model.toString(), "--method", "compresso", "--ratio", "0.3", "--steps", "2",
                "--out", tmp.resolve("x").toString());
        assertEquals(2, r.code()); // a usage error (Validation), before any work
        assertTrue(r.err().contains("--train-data") && r.err().lines().count() == 1, r.err());
        assertTrue(!Files.exists(tmp.resolve("x")), "nothing written");
    }
}
