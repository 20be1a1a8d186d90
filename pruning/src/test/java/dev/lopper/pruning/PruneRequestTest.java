package dev.lopper.pruning;

import ai.djl.Device;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.graph.StructureGraph;
import org.junit.jupiter.api.Test;

import java.lang.reflect.RecordComponent;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/** {@link PruneRequest#toBuilder()}: a copy that changes only what is set on it. */
class PruneRequestTest {
    /** A request with every field set to a value other than its default. */
    static PruneRequest full() {
        Map<String, String> opts = new LinkedHashMap<>();
        opts.put("metric", "ifv");
        opts.put("compensation", "false");
        Progress progress = Progress.lines(s -> { });
        return new PruneRequest(Path.of("m"), "flap", opts, 0.3, new LinkedHashSet<>(List.of("heads", "layers")), "global",
                StructureGraph.Kind.QUERY_HEAD, 0.1, 0.2, 1, 2, Path.of("calib.txt"), "body", 7, 33, 5L, 64, Path.of("plan.json"),
                Path.of("out"), Path.of("plan-out.json"), true, Device.gpu(1), progress, "absorb", "rescale");
    }

    @Test
    void toBuilderBuildEqualsTheOriginal() throws Exception {
        PruneRequest r = full();
        for (RecordComponent c : PruneRequest.class.getRecordComponents()) {
            assertNotNull(c.getAccessor().invoke(r), c.getName() + " must be set for this test to cover it");
        }
        assertEquals(r, r.toBuilder().build());
    }

    @Test
    void toBuilderChangesOnlyWhatIsSet() {
        PruneRequest r = full();
        PruneRequest q = r.toBuilder().out(Path.of("elsewhere")).option("metric", "wifv").build();
        assertEquals(Path.of("elsewhere"), q.out());
        assertEquals("wifv", q.criterionOptions().get("metric"));
        assertNotEquals(r, q);
        assertEquals(r, q.toBuilder().out(r.out()).options(r.criterionOptions()).build());
        assertEquals(Path.of("m2"), r.toBuilder().model(Path.of("m2")).build().model());
    }

    /** job.json's record of a prune: every result-changing setting, in a fixed order whatever the set's order. */
    @Test
    void settingsJsonHasEveryResultChangingSettingInAFixedOrder() {
        PruneRequest a = PruneRequest.builder(Path.of("m")).criterion("magnitude").ratio(0.5)
                .targets(new java.util.LinkedHashSet<>(java.util.List.of("heads", "channels"))).build();
        PruneRequest b = a.toBuilder().targets(new java.util.LinkedHashSet<>(java.util.List.of("channels", "heads"))).build();
        org.junit.jupiter.api.Assertions.assertEquals(a.settingsJson(), b.settingsJson());
        org.junit.jupiter.api.Assertions.assertEquals("[\"channels\",\"heads\"]", a.settingsJson().get("targets").toString());
        org.junit.jupiter.api.Assertions.assertNotEquals(a.settingsJson(), a.toBuilder().keepLast(1).build().settingsJson());
        org.junit.jupiter.api.Assertions.assertNotEquals(a.settingsJson(), a.toBuilder().uniformRounding("absorb").build().settingsJson());
        org.junit.jupiter.api.Assertions.assertEquals(a.settingsJson(), a.toBuilder().chunkTokens(64).out(Path.of("x")).build().settingsJson(),
                "output paths and chunk sizes change no number");
    }
}
