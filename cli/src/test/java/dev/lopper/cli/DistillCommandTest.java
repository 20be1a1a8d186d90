package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper recover --teacher} and {@code lopper prune --recover-steps N --teacher}: runs, options, one-line refusals. */
class DistillCommandTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path pruned;
    static Path text;

    @BeforeAll
    static void setUp() throws Exception {
        model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama().withHeads(4, 2).withLayers(3));
        text = tmp.resolve("train.txt");
        RandomModels.writeTrainingText(text, 300);
        pruned = tmp.resolve("pruned");
        CliTest.Result p = CliTest.run("prune", model.toString(), "--ratio", "0.4", "--out", pruned.toString());
        assertEquals(0, p.code(), p.err());
    }

    private static String[] recover(Path out, String... extra) {
        List<String> a = new java.util.ArrayList<>(List.of("recover", pruned.toString(), "--train-data", text.toString(), "--steps", "2",
                "--micro-batch", "2", "--accumulation", "1", "--train-seq-len", "32", "--out", out.toString(), "--json"));
        a.addAll(List.of(extra));
        return a.toArray(String[]::new);
    }

    @Test
    void recoverDistilsWithTheStreamedTeacherTheCacheAndEveryWeight() throws Exception {
        CliTest.Result r = CliTest.run(recover(tmp.resolve("kd"), "--teacher", model.toString(), "--kd-alpha", "0.5", "--kd-temperature", "2"));
        assertEquals(0, r.code(), r.err());
        assertEquals("distillation", new ObjectMapper().readTree(r.out()).get("loss").asText());
        JsonNode job = new ObjectMapper().readTree(tmp.resolve("kd.job").resolve("job.json").toFile());
        assertEquals(0.5, job.at("/distill/alpha").asDouble());
        assertTrue(job.at("/distill/teacher_hash").asText().startsWith("sha256:"));

        Path cache = tmp.resolve("cache");
        CliTest.Result c = CliTest.run(recover(tmp.resolve("kd-cache"), "--teacher", model.toString(), "--teacher-cache", cache.toString(),
                "--kd-top-k", "16"));
        assertEquals(0, c.code(), c.err());
        assertTrue(Files.isRegularFile(cache.resolve("cache.json")));

        CliTest.Result h = CliTest.run(recover(tmp.resolve("kd-hidden"), "--teacher", model.toString(), "--hidden-loss", "cosine",
                "--hidden-layers", "0,2", "--hidden-weight", "0.5"));
        assertEquals(0, h.code(), h.err());
        JsonNode hj = new ObjectMapper().readTree(tmp.resolve("kd-hidden.job").resolve("job.json").toFile());
        assertEquals("[0,2]", hj.at("/distill/hidden_layers").toString());

        CliTest.Result f = CliTest.run(recover(tmp.resolve("kd-full"), "--teacher", model.toString(), "--full"));
        assertEquals(0, f.code(), f.err());
        JsonNode fj = new ObjectMapper().readTree(tmp.resolve("kd-full.job").resolve("job.json").toFile());
        assertEquals("full", fj.get("training").asText());
        assertEquals(1e-4, fj.at("/options/learningRate").asDouble(), "--full's default rate");
        assertTrue(Files.isRegularFile(tmp.resolve("kd-full").resolve("config.json")));
    }

    @Test
    void pruneRecoverStepsDistilsFromTheUnprunedModel() throws Exception {
        Path out = tmp.resolve("prune-kd");
        CliTest.Result r = CliTest.run("prune", model.toString(), "--ratio", "0.4", "--recover-steps", "2", "--train-data", text.toString(),
                "--micro-batch", "2", "--accumulation", "1", "--train-seq-len", "32", "--teacher", model.toString(), "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        JsonNode job = new ObjectMapper().readTree(tmp.resolve("prune-kd.job").resolve("job.json").toFile());
        assertEquals(1.0, job.at("/recover/distill/alpha").asDouble());
        CliTest.Result orphan = CliTest.run("prune", model.toString(), "--ratio", "0.4", "--teacher", model.toString(), "--out",
                tmp.resolve("x").toString());
        assertEquals(1, orphan.code());
        assertTrue(orphan.err().contains("--teacher: only with --recover-steps"), orphan.err());
        CliTest.Result scheduled = CliTest.run("prune", model.toString(), "--method", "lora-prune", "--ratio", "0.4", "--train-data",
                text.toString(), "--steps", "2", "--teacher", model.toString(), "--out", tmp.resolve("y").toString());
        assertEquals(1, scheduled.code());
        assertTrue(scheduled.err().contains("--teacher: only with --recover-steps N after a one-shot criterion; lora-prune"), scheduled.err());
        assertEquals(1, scheduled.err().strip().lines().count(), scheduled.err());
    }

    @Test
    void badDistillationOptionsAreOneLine() throws Exception {
        Path other = tmp.resolve("other-vocab");
        RandomModels.Spec s = RandomModels.llama();
        RandomModels.write(other, new RandomModels.Spec(s.family(), 512, s.hidden(), s.layers(), s.heads(), s.kvHeads(), s.headDim(),
                s.intermediate(), s.tied(), s.qkvBias(), s.shards(), s.dtype(), s.seed(), s.ropeTheta(), s.ropeScaling(), s.slidingWindow()));
        String[][] cases = {
            {"--teacher", other.toString()}, {"vocab_size 512"},
            {"--kd-alpha", "0.5"}, {"--kd-alpha: only with --teacher"},
            {"--teacher", model.toString(), "--kd-alpha", "1.5"}, {"--kd-alpha 1.5: expected a weight in [0, 1]"},
            {"--teacher", model.toString(), "--kd-top-k", "8"}, {"--kd-top-k: only with --teacher-cache"},
            {"--teacher", tmp.resolve("nope").toString()}, {"no config.json"},
            {"--full", "--stream"}, {"--stream: LoRA's; --full trains every weight"},
            {"--full", "--lora-rank", "4"}, {"--lora-rank: LoRA's; --full trains every weight"},
            {"--teacher", model.toString(), "--hidden-loss", "l1"}, {"--hidden-loss l1: expected one of cosine, mse"},
            {"--teacher", model.toString(), "--hidden-layers", "1"}, {"--hidden-layers: only with --hidden-loss"},
            {"--teacher", model.toString(), "--hidden-loss", "mse", "--hidden-layers", "7"}, {"--hidden-layers 7: the student has layers 0 to 2"},
        };
        for (int i = 0; i < cases.length; i += 2) {
            CliTest.Result r = CliTest.run(recover(tmp.resolve("bad" + i), cases[i]));
            assertEquals(1, r.code(), String.join(" ", cases[i]) + ": " + r.err());
            assertEquals(1, r.err().strip().lines().count(), r.err());
            assertTrue(r.err().contains(cases[i + 1][0]), r.err());
        }
    }
}
