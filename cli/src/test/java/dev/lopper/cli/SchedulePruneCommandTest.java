package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.plan.PruningPlan;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper prune} hands scheduled pruning to the schedule engine: --iterative-steps end to end, bad input in one line. */
class SchedulePruneCommandTest {
    @TempDir
    Path tmp;

    private String[] run(String... args) {
        // as lopper prune runs it: Main's checks (Validation) and error handling
        String[] all = new String[args.length + 1];
        all[0] = "prune";
        System.arraycopy(args, 0, all, 1, args.length);
        CliTest.Result r = CliTest.run(all);
        return new String[] {String.valueOf(r.code()), r.out(), r.err()};
    }

    @Test
    void iterativeStepsWritesAPlainModelWithThePlanOnTheOriginalIndices() throws Exception {
        Path model = tmp.resolve("model");
        RandomModels.write(model, RandomModels.llama().withLayers(3));
        Path out = tmp.resolve("pruned");
        String[] r = run(model.toString(), "--method", "magnitude", "--ratio", "0.5", "--iterative-steps", "2", "--out", out.toString(), "--json");
        assertEquals("0", r[0], r[2]);
        JsonNode j = new ObjectMapper().readTree(r[1]);
        assertTrue(j.get("params_after").asLong() < j.get("params_before").asLong());
        try (ModelDir d = ModelDir.open(out)) {
            assertEquals(48, d.config().layer(0).intermediateSize()); // int(0.5 x 96) removed in two steps of 24
        }
        PruningPlan p = PruningPlan.load(out.resolve("lopper_plan.json"));
        assertEquals(3, p.layers().size());
        assertTrue(Files.isRegularFile(out.resolve("curve.csv")));
    }

    @Test
    void badScheduleOptionsFailInOneLine() throws Exception {
        Path model = tmp.resolve("model");
        RandomModels.write(model, RandomModels.llama());
        String[] r = run(model.toString(), "--method", "lora-prune", "--ratio", "0.5", "--out", tmp.resolve("o").toString());
        assertEquals("2", r[0]); // a usage error (Validation), before any work
        assertTrue(r[2].contains("--steps"), r[2]);
        assertEquals(1, r[2].strip().lines().count(), r[2]);
        r = run(model.toString(), "--method", "wanda-sp", "--ratio", "0.5", "--iterative", "2", "--allocation", "adaptive",
                "--calib", "x.txt", "--out", tmp.resolve("o2").toString());
        assertEquals("1", r[0]);
        assertFalse(Files.exists(tmp.resolve("o2")));
    }
}
