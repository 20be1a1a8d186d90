package dev.lopper.cli;

import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.plan.ModelHash;
import ai.djl.Device;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelStats;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code lopper prune} end to end on a tiny random model, and its bad-input errors (nothing written). */
class PruneCommandTest {
    @TempDir
    Path tmp;

    private record Run(int code, String out, String err) {
    }

    private Run prune(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        // the whole command line, as users run it: Validation's checks, one-line errors, exit codes
        CommandLine cl = Main.commandLine();
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int code = cl.execute(java.util.stream.Stream.concat(java.util.stream.Stream.of("prune"), java.util.Arrays.stream(args)).toArray(String[]::new));
        return new Run(code, out.toString(), err.toString());
    }

    private Path model() throws Exception {
        Path dir = tmp.resolve("model");
        RandomModels.write(dir, RandomModels.llama().withHeads(8, 4).withLayers(3));
        return dir;
    }

    @Test
    void magnitudePruneWritesALoadableSmallerModelAndPlan() throws Exception {
        Path dir = model();
        Path out = tmp.resolve("pruned");
        Path planFile = tmp.resolve("plan.json");
        Run r = prune(dir.toString(), "--method", "magnitude", "--ratio", "0.25", "--targets", "heads,channels",
                "--out", out.toString(), "--plan-out", planFile.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode summary = new ObjectMapper().readTree(r.out());
        assertEquals(0.25, summary.get("achieved_ratio").asDouble(), 1e-12, "1 of 4 groups and 24 of 96 channels per layer");
        try (ModelDir md = ModelDir.open(out); LlamaModel m = md.loadModel(Device.cpu())) {
            assertEquals(summary.get("params_after").asLong(), ModelStats.parameters(md.config()));
            assertEquals(6, md.config().layer(0).numHeads());
            assertEquals(3, md.config().layer(0).numKvHeads());
            assertEquals(72, md.config().layer(2).intermediateSize());
            float[][] logits = m.logits(new long[] {1, 5, 9, 200});
            assertTrue(Float.isFinite(logits[3][7]));
            assertTrue(Files.exists(out.resolve("tokenizer.json")));
        }
        // lopper inspect reports the parameter count the plan's formula gives, and the checkpoint holds exactly that
        StringWriter inspectOut = new StringWriter();
        CommandLine inspect = Main.commandLine();
        inspect.setOut(new PrintWriter(inspectOut));
        assertEquals(0, inspect.execute("inspect", out.toString(), "--json"));
        JsonNode described = new ObjectMapper().readTree(inspectOut.toString());
        assertEquals(summary.get("params_after").asLong(), described.get("parameters").asLong());
        assertEquals(summary.get("params_after").asLong(), described.get("checkpoint_elements").asLong());
        // lopper ppl DIR works on the pruned model
        Path text = tmp.resolve("t.txt");
        Files.writeString(text, "In the beginning God created the heaven and the earth. ".repeat(20));
        StringWriter pplOut = new StringWriter();
        CommandLine ppl = Main.commandLine();
        ppl.setOut(new PrintWriter(pplOut));
        assertEquals(0, ppl.execute("ppl", out.toString(), "--text", text.toString(), "--seq-len", "64"));
        assertTrue(pplOut.toString().strip().lines().reduce((a, b) -> b).orElse("").matches("perplexity: \\d+\\.\\d{4}"), pplOut.toString());
        PruningPlan plan = PruningPlan.load(planFile);
        assertEquals(ModelHash.of(dir), plan.modelHash());
        assertEquals("magnitude", plan.criterion());
        assertEquals("l2", plan.criterionOptions().get("norm").asText());
        assertEquals(PruningPlan.load(out.resolve("lopper_plan.json")).toJson(), plan.toJson());

        // applying the written plan gives the same model
        Path again = tmp.resolve("again");
        Run a = prune(dir.toString(), "--apply-plan", planFile.toString(), "--out", again.toString());
        assertEquals(0, a.code(), a.err());
        assertTrue(a.out().contains("achieved ratio 0.2500"), a.out());
        assertEquals(Files.readString(out.resolve("config.json")), Files.readString(again.resolve("config.json")));
        assertEquals(-1, Files.mismatch(out.resolve("model.safetensors"), again.resolve("model.safetensors")));
    }

    @Test
    void globalAllocationGivesNonUniformLayers() throws Exception {
        Path dir = model();
        Path out = tmp.resolve("pruned");
        Run r = prune(dir.toString(), "--ratio", "0.3", "--allocation", "global", "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        try (ModelDir md = ModelDir.open(out); LlamaModel m = md.loadModel(Device.cpu())) {
            assertTrue(md.config().numLayers() == 3);
            assertTrue(Float.isFinite(m.logits(new long[] {3, 4})[1][0]));
        }
        assertTrue(r.out().contains("layer  heads"), r.out());
    }

    /** --targets hidden from the command line: the stream shrinks, the plan records it; bad combinations fail in one line. */
    @Test
    void hiddenTargetShrinksTheStreamAndBadCombinationsFailInOneLine() throws Exception {
        Path dir = model();
        Path out = tmp.resolve("narrow");
        Run r = prune(dir.toString(), "--ratio", "0.25", "--targets", "hidden", "--hidden-norm", "rescale", "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        try (ModelDir md = ModelDir.open(out); ModelDir orig = ModelDir.open(dir)) {
            int d = orig.config().hiddenSize();
            assertEquals(d - d / 4, md.config().hiddenSize());
            assertTrue(Files.readString(out.resolve("lopper_plan.json")).contains("\"norm\" : \"rescale\""));
        }
        Run bad = prune(dir.toString(), "--ratio", "0.25", "--targets", "heads", "--hidden-norm", "rescale", "--out", tmp.resolve("x").toString());
        assertEquals(1, bad.err().strip().lines().count(), bad.err());
        assertTrue(bad.err().contains("--hidden-norm applies to --targets hidden only"), bad.err());
        Run depth = prune(dir.toString(), "--ratio", "0.25", "--targets", "heads", "--method", "block-influence", "--calib",
                dir.resolve("tokenizer.json").toString(), "--out", tmp.resolve("y").toString());
        assertTrue(depth.err().contains("scores layers and sublayers only"), depth.err());
    }

    @Test
    void layerPruningRemovesTheLowestScoredLayer() throws Exception {
        Path dir = model();
        Path out = tmp.resolve("shallow");
        Run r = prune(dir.toString(), "--ratio", "0.34", "--targets", "layers", "--out", out.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode summary = new ObjectMapper().readTree(r.out());
        assertEquals(1, java.util.stream.StreamSupport.stream(summary.get("layers").spliterator(), false)
                .filter(l -> l.get("removed").asBoolean()).count());
        try (ModelDir md = ModelDir.open(out)) {
            assertEquals(2, md.config().numLayers());
            assertTrue(md.config().isUniform());
            assertFalse(Files.readString(out.resolve("config.json")).contains("lopper_layers"), "a standard HF config");
        }
    }

    @Test
    void badInputFailsClearlyAndWritesNothing() throws Exception {
        Path dir = model();
        Path out = tmp.resolve("pruned");
        Path plan = tmp.resolve("p.json");
        assertFails(prune(dir.toString(), "--ratio", "1.5", "--out", out.toString()), "[0, 1)", out);
        assertFails(prune(dir.toString(), "--ratio", "-0.1", "--out", out.toString()), "[0, 1)", out);
        assertFails(prune(dir.toString(), "--ratio", "0.2", "--targets", "heads,neurons", "--out", out.toString()), "neurons", out);
        assertFails(prune(dir.toString(), "--ratio", "0.2", "--method", "psychic", "--out", out.toString()), "psychic", out);

        Files.writeString(plan, "{\"format\": \"lopper-plan/1\", \"layers\": [{\"layer\": 0, \"keptHeads\": [0, 99]}]}");
        assertFails(prune(dir.toString(), "--apply-plan", plan.toString(), "--out", out.toString()), "query head 99 does not exist", out);
        Files.writeString(plan, "{\"format\": \"lopper-plan/1\", \"removedLayers\": [7]}");
        assertFails(prune(dir.toString(), "--apply-plan", plan.toString(), "--out", out.toString()), "layer 7 does not exist", out);
        Files.writeString(plan, "{\"format\": \"lopper-plan/1\", \"layers\": [{\"layer\": 2, \"keptChannels\": []}]}");
        assertFails(prune(dir.toString(), "--apply-plan", plan.toString(), "--out", out.toString()), "every MLP channel", out);

        // a plan made for another model
        Path other = tmp.resolve("other");
        RandomModels.write(other, RandomModels.llama().withHeads(8, 4).withLayers(3).withSeed(7));
        assertNotEquals(ModelHash.of(dir), ModelHash.of(other));
        Files.writeString(plan, PruningPlan.empty().withModelHash(ModelHash.of(other)).toJsonString());
        assertFails(prune(dir.toString(), "--apply-plan", plan.toString(), "--out", out.toString()), plan + ": field 'modelHash'", out);
        assertFails(prune(dir.toString(), "--apply-plan", plan.toString(), "--out", out.toString()), "different model", out);
    }

    private static void assertFails(Run r, String message, Path out) {
        // 2: a usage error (an option's value), 1: what a file says
        assertEquals(r.err().contains("(see lopper prune --help)") ? 2 : 1, r.code(), r.err());
        assertTrue(r.err().startsWith("error: ") && r.err().strip().lines().count() == 1, r.err());
        assertTrue(r.err().contains(message), "expected '" + message + "' in: " + r.err());
        assertFalse(Files.exists(out), "nothing may be written on bad input");
    }
}
