package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelStats;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.plan.PruningPlan;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper prune --method adapt-pruner} parses its options and hands them to the schedule engine. */
class AdaptPrunerCommandTest {
    @TempDir
    static Path shared;

    @BeforeAll
    static void cacheInTemp() {
        System.setProperty("lopper.cache", shared.resolve("cache").toString());
    }

    private record Run(int code, String out, String err) {
    }

    private static Run prune(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new PruneCommand());
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int code = cl.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    @Test
    void adaptPrunerRunsScheduledWithItsOptions() throws Exception {
        Path model = shared.resolve("model");
        RandomModels.write(model, RandomModels.llama().withHeads(8, 4).withLayers(3));
        Path text = Files.writeString(shared.resolve("calib.txt"),
                "In the beginning God created the heaven and the earth. And the earth was without form, and void.\n".repeat(30));
        Path out = shared.resolve("out");
        Run r = prune(model.toString(), "--method", "adapt-pruner", "--criterion", "magnitude", "--step-ratio", "0.25", "--ratio", "0.5",
                "--calib", text.toString(), "--samples", "4", "--seq-len", "16", "--out", out.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode s = new ObjectMapper().readTree(r.out());
        assertEquals("adapt-pruner", s.get("method").asText());
        try (ModelDir md = ModelDir.open(out)) {
            assertEquals(s.get("params_after").asLong(), ModelStats.parameters(md.config()));
        }
        PruningPlan plan = PruningPlan.load(out.resolve("lopper_plan.json"));
        assertEquals("adapt-pruner", plan.allocation());
        Path work = dev.lopper.training.job.JobDir.dirOf(out);
        assertTrue(Files.isRegularFile(work.resolve("steps/0002/done.json")) && !Files.exists(work.resolve("steps/0003")), "two steps of 0.25");
        assertTrue(Files.readString(work.resolve("job.json")).contains("\"step-ratio\" : \"0.25\""), "the option is recorded");

        Run bad = prune(model.toString(), "--method", "magnitude", "--step-ratio", "0.1", "--ratio", "0.5", "--out", shared.resolve("x").toString());
        assertEquals(1, bad.code());
        assertTrue(bad.err().contains("--step-ratio is an option of --method adapt-pruner"), bad.err());
    }
}
