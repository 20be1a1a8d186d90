package dev.lopper.model.io;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** ModelWriter's slice-by-slice bf16 conversion = the whole array's, byte for byte, whatever the slice size. */
class Bf16ChunksTest {
    @Test
    void slicesGiveTheWholeArraysBytes() {
        Random rnd = new Random(7);
        float[] values = new float[5 * 13];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(7) - 3));
        }
        values[3] = Float.NaN;
        values[4] = Float.NEGATIVE_INFINITY;
        ByteBuffer want = BFloat16.fromFloat32(values);
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            NDArray a = m.create(values, new Shape(5, 13));
            for (int chunk : new int[] {1, 7, 13, 64, 65, 1 << 24}) {
                ByteBuffer got = ModelWriter.bf16InChunks(a, chunk);
                assertEquals(want.remaining(), got.remaining(), "chunk " + chunk);
                assertEquals(want, got, "chunk " + chunk);
            }
        }
    }
}
