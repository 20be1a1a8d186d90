package dev.lopper.calibration;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.model.util.Progress;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A calibration killed after a layer and run again resumes after that layer and ends with exactly the statistics of
 * an uninterrupted run (bit for bit), including what collectors compute from them in endLayer.
 */
class CalibrationResumeTest {
    @TempDir
    Path tmp;

    /** Channel statistics plus a per-layer result computed in endLayer from them and the weights. */
    static final class Scoring extends ChannelStatsCollector {
        final double[][] derived = new double[4][];

        Scoring() {
            super(EnumSet.of(Tap.O_PROJ_INPUT, Tap.DOWN_PROJ_INPUT));
        }

        @Override
        public void endLayer(LayerWeights w) {
            double[] n = get(w.index(), Tap.DOWN_PROJ_INPUT).l2Norm();
            double[] col = w.down().abs().sum(new int[] {0}).toType(ai.djl.ndarray.types.DataType.FLOAT64, false).toDoubleArray();
            for (int j = 0; j < n.length; j++) {
                n[j] *= col[j];
            }
            derived[w.index()] = n;
        }
    }

    /** The run is "killed" right after layer {@code at} finished (its checkpoint is written by then). */
    static Progress killAfter(int at, List<String> messages) {
        return new Progress() {
            @Override
            public void message(String line) {
                messages.add(line);
            }

            @Override
            public void layerDone(int layer, int layers, long tokens, double layerSeconds, double elapsedSeconds) {
                if (layer == at) {
                    throw new IllegalStateException("killed after layer " + layer);
                }
            }
        };
    }

    @Test
    void aKilledRunResumesAfterItsLastLayerWithIdenticalStatistics() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(4));
        long[][] w = CalibrationEngineTest.windows(5, 12, 300, 3);
        Path ckpt = tmp.resolve("ckpt");
        try (ModelDir md = ModelDir.open(dir)) {
            CalibrationEngine engine = new CalibrationEngine(md.config(), md.checkpoint(), Device.cpu());
            Scoring straight = new Scoring();
            BlockInfluence straightBlock = new BlockInfluence(4);
            engine.run(CalibrationData.of(w), List.of(straight, straightBlock), new CalibrationEngine.Options(24, Progress.NONE));

            List<String> messages = new ArrayList<>();
            CalibrationEngine.Options opts = new CalibrationEngine.Options(24, killAfter(1, messages)).withCheckpoints(ckpt, "job");
            assertThrows(IllegalStateException.class, () -> engine.run(CalibrationData.of(w), List.of(new Scoring(), new BlockInfluence(4)), opts));
            try (Stream<Path> s = Files.list(ckpt)) {
                assertEquals(List.of("layer-00001"), s.map(p -> p.getFileName().toString()).sorted().toList(), "only the latest checkpoint is kept");
            }

            Scoring resumed = new Scoring();
            BlockInfluence resumedBlock = new BlockInfluence(4);
            engine.run(CalibrationData.of(w), List.of(resumed, resumedBlock), opts.withProgress(killAfter(-1, messages)));
            assertTrue(messages.stream().anyMatch(m -> m.startsWith("resuming calibration after layer 2/4")), messages.toString());
            for (int l = 0; l < 4; l++) {
                for (Tap tap : List.of(Tap.O_PROJ_INPUT, Tap.DOWN_PROJ_INPUT)) {
                    assertArrayEquals(straight.get(l, tap).sumOfSquares(), resumed.get(l, tap).sumOfSquares(), "layer " + l + " " + tap);
                    assertArrayEquals(straight.get(l, tap).flapFluctuation(), resumed.get(l, tap).flapFluctuation(), "layer " + l + " " + tap);
                }
                assertArrayEquals(straight.derived[l], resumed.derived[l], "endLayer result of layer " + l);
            }
            assertArrayEquals(straightBlock.angular(), resumedBlock.angular());
        }
    }

    @Test
    void anotherJobsCheckpointIsIgnored() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(4));
        Path ckpt = tmp.resolve("ckpt");
        try (ModelDir md = ModelDir.open(dir); NDManager m = NDManager.newBaseManager()) {
            CalibrationEngine engine = new CalibrationEngine(md.config(), md.checkpoint(), Device.cpu());
            List<String> messages = new ArrayList<>();
            CalibrationEngine.Options opts = new CalibrationEngine.Options(24, killAfter(1, messages)).withCheckpoints(ckpt, "job");
            assertThrows(IllegalStateException.class,
                    () -> engine.run(CalibrationData.of(CalibrationEngineTest.windows(5, 12, 300, 3)), List.of(new Scoring()), opts));
            // other windows: the checkpoint is not this job's
            engine.run(CalibrationData.of(CalibrationEngineTest.windows(5, 12, 300, 4)), List.of(new Scoring()),
                    opts.withProgress(killAfter(-1, messages)));
            assertTrue(messages.stream().noneMatch(s -> s.startsWith("resuming")), messages.toString());
        }
    }

    @Test
    void aCheckpointThatCannotBeWrittenOnlyWarns() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(4));
        Path notADir = Files.writeString(tmp.resolve("file"), "x"); // checkpoints cannot go under a file
        try (ModelDir md = ModelDir.open(dir)) {
            CalibrationEngine engine = new CalibrationEngine(md.config(), md.checkpoint(), Device.cpu());
            long[][] w = CalibrationEngineTest.windows(5, 12, 300, 3);
            Scoring straight = new Scoring();
            engine.run(CalibrationData.of(w), List.of(straight), new CalibrationEngine.Options(24, Progress.NONE));
            List<String> messages = new ArrayList<>();
            Scoring withFailingCheckpoints = new Scoring();
            engine.run(CalibrationData.of(w), List.of(withFailingCheckpoints),
                    new CalibrationEngine.Options(24, killAfter(-1, messages)).withCheckpoints(notADir.resolve("ckpt"), "job"));
            assertEquals(1, messages.stream().filter(m -> m.startsWith("warning: calibration checkpoint")).count(), messages.toString());
            for (int l = 0; l < 4; l++) {
                assertArrayEquals(straight.derived[l], withFailingCheckpoints.derived[l]);
            }
        }
    }
}
