package dev.lopper.pruning.criteria;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.calibration.gradient.LayerParam;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** Scores formed row block by row block (LLM-Pruner, GBLM) add up to the same per-index sums as the whole matrix. */
class GradientScoresTest {
    @Test
    void rowBlocksGiveTheWholeMatrixPerIndexSums() {
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            m.getEngine().setRandomSeed(3);
            NDArray s = m.randomNormal(new Shape(37, 11)).toType(DataType.FLOAT64, false);
            for (LayerParam p : List.of(LayerParam.GATE, LayerParam.DOWN)) { // a row cut and a column cut
                double[] whole = GradientScores.perIndex(s, p);
                // 8 rows of 11 fp64 per block: 37 rows = 4 full blocks and a ragged one
                List<long[]> blocks = GradientScores.rowBlocks(s, 8L * 11 * 8);
                assertEquals(5, blocks.size());
                assertArrayEquals(new long[] {32, 37}, blocks.get(4));
                double[] blocked = new double[whole.length];
                for (long[] b : blocks) {
                    GradientScores.addPerIndex(s.get(new NDIndex("{}:{}", b[0], b[1])), p, b[0], blocked);
                }
                // plain loops over the matrix as the independent reference
                double[][] a = new double[37][11];
                double[] flat = s.toDoubleArray();
                double[] ref = new double[whole.length];
                for (int i = 0; i < 37; i++) {
                    for (int j = 0; j < 11; j++) {
                        a[i][j] = flat[i * 11 + j];
                        ref[p == LayerParam.DOWN ? j : i] += a[i][j];
                    }
                }
                assertArrayEquals(ref, whole, 1e-12);
                assertArrayEquals(ref, blocked, 1e-12);
            }
            assertEquals(1, GradientScores.rowBlocks(m.ones(new Shape(5))).size(), "a vector is one block");
        }
    }
}
