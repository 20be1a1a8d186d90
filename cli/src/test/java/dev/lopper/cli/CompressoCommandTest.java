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
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 200; i++) {
            sb.append("In the beginning God created the heaven and the earth. Verse ").append(i % 17).append(".\n");
        }
        Files.writeString(text, sb.toString());
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
    void prunesWritesAPlainModelAndResumes() throws Exception {
        Path out = tmp.resolve("c");
        String quiet = System.clearProperty("lopper.quiet");
        CliTest.Result r;
        try {
            r = CliTest.run(compresso(out));
        } finally {
            if (quiet != null) {
                System.setProperty("lopper.quiet", quiet);
            }
        }
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("compresso step 6/6") && r.err().contains("expected sparsity"), r.err());
        assertTrue(r.out().contains("pruned") && r.out().contains("compresso"), r.out());
        List<String> csv = Files.readAllLines(out.resolve("compresso.csv"));
        assertEquals("step,loss,lagrangian,expected_sparsity,target_sparsity,lambda_1,lambda_2,lr", csv.get(0));
        assertEquals(7, csv.size());
        assertTrue(Files.isRegularFile(out.resolve("compresso.png")));
        JsonNode plan = new ObjectMapper().readTree(out.resolve("model/lopper_plan.json").toFile());
        assertEquals("compresso", plan.get("criterion").asText());
        try (ModelDir d = ModelDir.open(out.resolve("model"))) {
            assertEquals(2, d.config().numLayers());
        }
        CliTest.Result ppl = CliTest.run("ppl", out.resolve("model").toString(), "--text", text.toString(), "--seq-len", "16");
        assertEquals(0, ppl.code(), ppl.err());
        // the same command again: the finished run's checkpoint is found, nothing is retrained, the same model is written
        byte[] before = Files.readAllBytes(out.resolve("model/model.safetensors"));
        CliTest.Result again = CliTest.run(compresso(out, "--json"));
        assertEquals(0, again.code(), again.err());
        assertTrue(java.util.Arrays.equals(before, Files.readAllBytes(out.resolve("model/model.safetensors"))), "same result on resume");
        JsonNode j = new ObjectMapper().readTree(again.out());
        assertEquals(6, j.get("steps").asInt());
        assertTrue(j.get("achieved_ratio").asDouble() >= 0);
    }

    @Test
    void refusesMissingTrainingData() {
        CliTest.Result r = CliTest.run("prune", model.toString(), "--method", "compresso", "--ratio", "0.3", "--steps", "2",
                "--out", tmp.resolve("x").toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains("--train-data") && r.err().lines().count() == 1, r.err());
        assertTrue(!Files.exists(tmp.resolve("x")), "nothing written");
    }
}
