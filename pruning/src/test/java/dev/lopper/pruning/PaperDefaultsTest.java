package dev.lopper.pruning;

import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.pruning.criteria.Criterion;
import dev.lopper.pruning.criteria.Defaults;
import dev.lopper.pruning.graph.StructureGraph;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Each criterion declares its paper's defaults (official code, docs/CRITERIA.md), and a run that names only the
 * criterion and the ratio runs exactly them and records them in the plan.
 */
class PaperDefaultsTest {
    @TempDir
    Path tmp;

    @ParameterizedTest
    @CsvSource({"magnitude,NONE,0,0,uniform,0,0", "wanda-sp,ACTIVATIONS,128,128,uniform,0,0", "flap,ACTIVATIONS,1024,128,adaptive,0,0",
            "cfsp,ACTIVATIONS,128,1024,cfsp-blocks,0,0", "llm-pruner,GRADIENTS,10,64,uniform,4,2", "gblm,GRADIENTS,128,2048,uniform,0,0"})
    void declared(String name, Criterion.Need need, int samples, int seqLen, String allocation, int keepFirst, int keepLast) {
        Criterion c = Criteria.create(name, Map.of());
        Defaults d = c.defaults();
        assertEquals(need, c.needs());
        assertEquals(samples, d.samples());
        assertEquals(seqLen, d.seqLen());
        assertEquals(allocation, d.allocation());
        assertEquals(StructureGraph.Kind.KV_GROUP, d.headUnit());
        assertEquals(keepFirst, d.keepFirst());
        assertEquals(keepLast, d.keepLast());
    }

    /** docs/CRITERIA.md's defaults table says what the code declares: samples, seq-len, allocation, head unit. */
    @Test
    void theDocsTableMatchesTheDeclaredDefaults() throws Exception {
        java.util.List<String> rows = Files.readAllLines(Path.of("../docs/CRITERIA.md")).stream()
                .filter(l -> l.startsWith("| ") && !l.startsWith("| method") && !l.startsWith("|---")).toList();
        Set<String> seen = new java.util.TreeSet<>();
        for (String row : rows) {
            String[] c = row.split("\\|");
            String name = c[1].trim();
            if (!Criteria.names().contains(name) || c.length < 6) {
                continue; // another table of the page
            }
            Defaults d = Criteria.create(name, Map.of()).defaults();
            assertEquals(d.samples() == 0 ? "-" : Integer.toString(d.samples()), c[2].trim(), name + ": samples");
            assertEquals(d.seqLen() == 0 ? "-" : Integer.toString(d.seqLen()), c[3].trim(), name + ": seq-len");
            assertTrue(c[4].trim().startsWith(d.allocation()), name + ": allocation " + c[4]);
            assertEquals(d.headUnit() == StructureGraph.Kind.QUERY_HEAD ? "query head" : "KV group", c[5].trim(), name + ": head unit");
            seen.add(name);
        }
        assertEquals(Criteria.names(), seen, "every criterion has its row");
    }

    /** The width/depth criteria of issue 23 (block influence, layer loss, angular distance, Minitron's activations). */
    @ParameterizedTest
    @CsvSource({"block-influence,256,128,KV_GROUP", "layer-loss,128,1024,KV_GROUP", "angular,256,128,KV_GROUP",
            "minitron,128,1024,QUERY_HEAD"})
    void declaredWidthAndDepth(String name, int seqLen, int samples, StructureGraph.Kind unit) {
        Criterion c = Criteria.create(name, Map.of());
        Defaults d = c.defaults();
        assertEquals(Criterion.Need.ACTIVATIONS, c.needs());
        assertEquals(samples, d.samples());
        assertEquals(seqLen, d.seqLen());
        assertEquals("uniform", d.allocation());
        assertEquals(unit, d.headUnit());
        assertEquals(0, d.keepFirst());
        assertEquals(0, d.keepLast());
    }

    @Test
    void everyRegisteredCriterionIsCovered() {
        assertEquals(Set.of("magnitude", "wanda-sp", "flap", "cfsp", "llm-pruner", "gblm", "block-influence", "layer-loss",
                "angular", "minitron"), Criteria.names());
    }

    /** magnitude alone, in the default suite (the calibrated rows below take minutes at paper sizes). */
    @Test
    void magnitudeAloneRunsItsDefaults() throws Exception {
        methodAloneRunsThePaper("magnitude", "uniform", null);
    }

    /**
     * Only --method and --ratio (and the calibration file): what runs is the paper's setup, recorded in the plan.
     * Slow (-Dslow): full paper calibration sizes (e.g. FLAP's 1024 x 128), about 11 minutes on 2 shared cores.
     */
    @Tag("slow")
    @ParameterizedTest
    @CsvSource({"magnitude,uniform,", "wanda-sp,uniform,sequential (official)", "flap,adaptive,wifv", "cfsp,cfsp-blocks,"})
    void methodAloneRunsThePaper(String name, String allocation, String option) throws Exception {
        Path dir = tmp.resolve("model");
        RandomModels.write(dir, RandomModels.llama().withHeads(8, 4).withLayers(3));
        Criterion c = Criteria.create(name, Map.of());
        Path text = Files.writeString(tmp.resolve("calib.txt"),
                "In the beginning God created the heaven and the earth. And the earth was without form, and void.\n".repeat(200));
        PruneRequest.Builder b = PruneRequest.builder(dir).criterion(name).ratio(0.2).planOut(tmp.resolve("plan.json"));
        if (c.needsCalibration()) {
            b.calibration(text);
        }
        PruneResult r = new Pruner().run(b.build());
        var plan = dev.lopper.pruning.plan.PruningPlan.load(tmp.resolve("plan.json"));
        assertEquals(allocation, plan.allocation());
        var s = plan.settings();
        assertEquals(allocation, s.get("allocation").get("value").asText());
        assertEquals("paper", s.get("allocation").get("from").asText());
        assertEquals("kv-group", s.get("head_unit").get("value").asText());
        assertEquals(0, s.get("keep_first").get("value").asInt());
        if (c.needsCalibration()) {
            assertEquals(c.defaults().samples(), plan.calibration().samples());
            assertEquals(c.defaults().seqLen(), plan.calibration().seqLen());
            assertEquals("paper", s.get("samples").get("from").asText());
        }
        if (name.equals("flap")) {
            assertEquals(option, plan.criterionOptions().get("metric").asText());
            assertEquals(true, plan.criterionOptions().get("biasCompensation").asBoolean());
        }
        if (name.equals("wanda-sp")) {
            assertEquals(option, plan.criterionOptions().get("order").asText());
        }
        assertEquals(allocation, r.settings().get("allocation").value());
    }
}
