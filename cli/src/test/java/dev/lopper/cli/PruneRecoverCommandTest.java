package dev.lopper.cli;

import dev.lopper.training.job.JobDir;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.training.job.PruneAndRecover;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper prune ... --recover-steps N}: the recovered model in OUT, refusals, lopper recover's defaults. */
class PruneRecoverCommandTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path text;

    @BeforeAll
    static void setUp() throws Exception {
        model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama().withHeads(4, 2).withLayers(2));
        text = tmp.resolve("train.txt");
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 200; i++) {
            sb.append("And God said, Let there be light: and there was light. ").append(i % 13).append('\n');
        }
        Files.writeString(text, sb.toString());
    }

    @Test
    void prunesRecoversAndWritesAPlainModel() throws Exception {
        Path out = tmp.resolve("pr");
        CliTest.Result r = CliTest.run("prune", model.toString(), "--ratio", "0.4", "--allocation", "global", "--recover-steps", "2",
                "--train-data", text.toString(), "--micro-batch", "1", "--accumulation", "1", "--train-seq-len", "32", "--val-windows", "2",
                "--out", out.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        assertEquals(2, j.get("steps").asInt());
        assertTrue(j.get("pruned_now").asBoolean());
        assertTrue(Files.isRegularFile(out.resolve("config.json")));
        assertFalse(Files.exists(out.resolve("adapter")));
        assertTrue(Files.isRegularFile(Path.of(out + JobDir.SUFFIX, "adapter", "adapter_config.json")));
        try (ModelDir pruned = ModelDir.open(Path.of(out + JobDir.SUFFIX, "pruned")); ModelDir d = ModelDir.open(out)) {
            assertEquals(pruned.config().layers(), d.config().layers()); // OUT has the pruned shapes
            assertFalse(d.config().isUniform());
        }
        // every command reads OUT
        System.setProperty("lopper.quiet", "true");
        CliTest.Result ppl = CliTest.run("ppl", out.toString(), "--text", text.toString(), "--seq-len", "32");
        assertEquals(0, ppl.code(), ppl.err());
    }

    @Test
    void refusalsAreOneLineAndBeforeWork() {
        Path out = tmp.resolve("refused");
        // a recovery option without --recover-steps
        CliTest.Result r = CliTest.run("prune", model.toString(), "--ratio", "0.4", "--lora-rank", "4", "--out", out.toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains("--lora-rank") && r.err().contains("--recover-steps") && r.err().strip().lines().count() == 1, r.err());
        // magnitude: no --calib to fall back to
        CliTest.Result d = CliTest.run("prune", model.toString(), "--ratio", "0.4", "--recover-steps", "2", "--out", out.toString());
        assertEquals(1, d.code());
        assertTrue(d.err().contains("--train-data") && d.err().strip().lines().count() == 1, d.err());
        assertFalse(Files.exists(out));
        assertFalse(Files.exists(Path.of(out + JobDir.SUFFIX)));
    }

    @Test
    void defaultsAreLopperRecoversDefaults() {
        RecoverCommand rc = new RecoverCommand();
        new CommandLine(rc).parseArgs("m", "--steps", "50", "--train-data", "t.txt", "--out", "o");
        PruneCommand pc = new PruneCommand();
        new CommandLine(pc).parseArgs("m", "--ratio", "0.2", "--recover-steps", "50", "--train-data", "t.txt", "--out", "o");
        PruneAndRecover.Request p = pc.recovery.request(PruneRequest.builder(Path.of("m")).ratio(0.2).out(Path.of("o")).build(), pc.training);
        assertEquals(rc.request().settings().options(), p.recovery().options());
        assertEquals(rc.request().settings().lora(), p.recovery().lora());
        assertEquals(rc.request().settings().valFraction(), p.recovery().valFraction());
        assertEquals(rc.request().settings().valWindows(), p.recovery().valWindows());
        assertEquals(rc.request().settings().mergedType(), p.recovery().mergedType());
    }
}
