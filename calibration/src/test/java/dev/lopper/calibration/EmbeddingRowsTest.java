package dev.lopper.calibration;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.ModelDir;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.model.util.Progress;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Embedding rows gathered from the stored BF16 matrix (issue 15 item 3) give exactly the statistics of the whole
 * matrix loaded in fp32 and indexed, as the engine did before: so no plan changes.
 */
class EmbeddingRowsTest {
    @TempDir
    Path tmp;

    @Test
    void gatheredRowsGiveTheStatisticsOfTheFullMatrix() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(2).withDtype(DataType.BFLOAT16).withShards(2));
        long[][] w = CalibrationEngineTest.windows(5, 12, 300, 11);
        try (ModelDir md = ModelDir.open(dir)) {
            ChannelStatsCollector rows = new ChannelStatsCollector(EnumSet.allOf(Tap.class));
            ChannelStatsCollector full = new ChannelStatsCollector(EnumSet.allOf(Tap.class));
            CalibrationEngine.Options opts = new CalibrationEngine.Options(24, Progress.NONE);
            new CalibrationEngine(md.config(), md.checkpoint(), Device.cpu()).run(CalibrationData.of(w), List.of(rows), opts);
            new CalibrationEngine(md.config(), new WholeOnly(md.checkpoint()), Device.cpu()).run(CalibrationData.of(w), List.of(full), opts);
            for (int layer = 0; layer < 2; layer++) {
                for (Tap tap : Tap.values()) {
                    String what = "layer " + layer + " " + tap;
                    assertEquals(full.get(layer, tap).tokens(), rows.get(layer, tap).tokens(), what);
                    assertArrayEquals(full.get(layer, tap).sumOfSquares(), rows.get(layer, tap).sumOfSquares(), 0.0, what);
                    assertArrayEquals(full.get(layer, tap).sum(), rows.get(layer, tap).sum(), 0.0, what);
                    assertArrayEquals(full.get(layer, tap).variance(), rows.get(layer, tap).variance(), 0.0, what);
                }
            }
        }
    }

    /** A source without stored bytes: loadRows falls back to loading the whole matrix and indexing it. */
    private record WholeOnly(TensorSource s) implements TensorSource {
        @Override
        public Set<String> names() {
            return s.names();
        }

        @Override
        public Shape shape(String name) {
            return s.shape(name);
        }

        @Override
        public DataType storedType(String name) {
            return s.storedType(name);
        }

        @Override
        public NDArray load(String name, NDManager manager, DataType type) {
            return s.load(name, manager, type);
        }
    }
}
