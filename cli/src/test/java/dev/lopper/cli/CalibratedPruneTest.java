package dev.lopper.cli;

import dev.lopper.pruning.plan.PruningPlan;
import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelStats;
import dev.lopper.model.WeightNames;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper prune --method wanda-sp|flap|cfsp --calib ...} end to end on a tiny random model. */
class CalibratedPruneTest {
    @TempDir
    static Path shared;
    @TempDir
    Path tmp;

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

    private Path model() throws Exception {
        Path dir = tmp.resolve("model");
        RandomModels.write(dir, RandomModels.llama().withHeads(8, 4).withLayers(3));
        return dir;
    }

    private Path text() throws Exception {
        return Files.writeString(tmp.resolve("calib.txt"),
                "In the beginning God created the heaven and the earth. And the earth was without form, and void.\n".repeat(30));
    }

    @ParameterizedTest
    @CsvSource({"wanda-sp,uniform", "wanda-sp,adaptive", "flap,adaptive", "flap,uniform", "cfsp,cfsp-blocks", "cfsp,uniform", "wanda-sp,adapt-pruner"})
    void prunesWithCalibration(String method, String allocation) throws Exception {
        Path dir = model();
        Path out = tmp.resolve("pruned");
        Run r = prune(dir.toString(), "--method", method, "--ratio", "0.3", "--allocation", allocation, "--calib", text().toString(),
                "--samples", "8", "--seq-len", "32", "--out", out.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode s = new ObjectMapper().readTree(r.out());
        double achieved = s.get("achieved_ratio").asDouble();
        assertTrue(achieved > 0.1 && achieved < 0.5, method + "/" + allocation + " achieved " + achieved);
        assertEquals(256, s.get("calibration_tokens").asLong());
        try (ModelDir md = ModelDir.open(out); LlamaModel m = md.loadModel(Device.cpu())) {
            assertEquals(s.get("params_after").asLong(), ModelStats.parameters(md.config()) - biasParams(md), "summary counts");
            assertEquals(s.get("compensation_bias_params").asLong(), biasParams(md));
            float[][] logits = m.logits(new long[] {1, 50, 90, 200});
            assertTrue(Float.isFinite(logits[3][7]));
            PruningPlan plan = PruningPlan.load(out.resolve("lopper_plan.json"));
            assertEquals(method, plan.criterion());
            assertEquals(new PruningPlan.Calibration(tmp.resolve("calib.txt").toString(), 8, 32), plan.calibration());
            boolean flap = method.equals("flap");
            assertEquals(flap, s.get("bias_compensation").asBoolean());
            for (int l = 0; l < md.config().numLayers(); l++) {
                var shape = md.config().layer(l);
                if (flap && shape.intermediateSize() < 96) {
                    assertTrue(shape.downProjBias(), "FLAP adds a down_proj bias to pruned layer " + l);
                    try (NDManager nm = NDManager.newBaseManager()) {
                        NDArray b = md.checkpoint().load(WeightNames.mlp(l, "down_proj", "bias"), nm);
                        assertTrue(b.abs().sum().getFloat() > 0, "compensation bias is non-zero");
                    }
                }
                if (!flap) {
                    assertTrue(!shape.downProjBias() && !shape.oProjBias());
                }
            }
        }
    }

    /** Compensation biases are not counted by the plan (they are not prunable and not structure). */
    private static long biasParams(ModelDir md) {
        long n = 0;
        for (var l : md.config().layers()) {
            n += (l.oProjBias() ? md.config().hiddenSize() : 0) + (l.downProjBias() ? md.config().hiddenSize() : 0);
        }
        return n;
    }

    @Test
    void sameSeedSamePlanAndSeedMatters() throws Exception {
        Path dir = model();
        Path text = text();
        String[] plans = new String[3];
        long[] seeds = {5, 5, 6};
        for (int i = 0; i < 3; i++) {
            Path plan = tmp.resolve("plan" + i + ".json");
            Run r = prune(dir.toString(), "--method", "flap", "--ratio", "0.4", "--allocation", "adaptive", "--calib", text.toString(),
                    "--samples", "4", "--seq-len", "16", "--seed", Long.toString(seeds[i]), "--plan-out", plan.toString());
            assertEquals(0, r.code(), r.err());
            plans[i] = Files.readString(plan);
        }
        assertEquals(plans[0], plans[1], "same seed, same plan");
        assertNotEquals(plans[0].replace("\"seed\" : 5", ""), plans[2].replace("\"seed\" : 6", ""), "another seed samples other windows");
    }

    @Test
    void calibratedMethodWithoutCalibFails() throws Exception {
        Path dir = model();
        Run r = prune(dir.toString(), "--method", "flap", "--ratio", "0.3", "--out", tmp.resolve("x").toString());
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("needs calibration data"), r.err());
        assertTrue(!Files.exists(tmp.resolve("x")));
        Run g = prune(dir.toString(), "--method", "wanda-sp", "--ratio", "0.3", "--allocation", "global", "--calib", text().toString(),
                "--out", tmp.resolve("y").toString());
        assertNotEquals(0, g.code());
        assertTrue(g.err().contains("needs scores comparable across layers") && !g.err().contains("layer 1/3"), "fails before calibrating: " + g.err());
    }
}
