package dev.lopper.eval.mc;

import ai.djl.Device;
import dev.lopper.eval.Evaluator;
import dev.lopper.eval.backend.LopperBackend;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.Pruner;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** kjv-cloze on lopper-tiny means something: well above chance dense, visibly lower after FLAP at 50%. */
class KjvClozeFixtureTest {
    @TempDir
    Path tmp;

    @Test
    void denseWellAboveChancePrunedLower() throws Exception {
        List<McExample> task = KjvCloze.generate(Fixtures.text("test"), 60, 1234);
        McResult dense;
        try (Evaluator ev = new LopperBackend(Fixtures.tinyModel(), Device.cpu())) {
            dense = McScorer.score(ev, task, KjvCloze.NAME, "kjv-test", "h");
        }
        Path pruned = tmp.resolve("flap-0.5");
        new Pruner().run(PruneRequest.builder(Fixtures.tinyModel()).criterion("flap").ratio(0.5)
                .calibration(Fixtures.text("train")).samples(32).out(pruned).progress(Progress.NONE).build());
        McResult flap;
        try (Evaluator ev = new LopperBackend(pruned, Device.cpu())) {
            flap = McScorer.score(ev, task, KjvCloze.NAME, "kjv-test", "h");
        }
        dev.lopper.model.testing.TestLog.printf("kjv-cloze (60 questions, seed 1234): dense acc %.3f +- %.3f acc_norm %.3f +- %.3f; FLAP 0.5 (32 calibration windows) "
                + "acc %.3f +- %.3f acc_norm %.3f +- %.3f%n", dense.acc(), dense.accStderr(), dense.accNorm(), dense.accNormStderr(),
                flap.acc(), flap.accStderr(), flap.accNorm(), flap.accNormStderr());
        assertTrue(dense.acc() > 0.4, "dense acc " + dense.acc());
        assertTrue(flap.acc() < dense.acc(), "pruned " + flap.acc() + " vs dense " + dense.acc());
    }
}
