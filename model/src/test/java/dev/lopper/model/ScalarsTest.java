package dev.lopper.model;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import org.junit.jupiter.api.Test;

import java.util.function.BiFunction;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

/**
 * A {@link Scalars} constant survives a GC between the forward and the backward. With DJL's {@code x.mul(3f)} the
 * same check gives garbage gradients (-2.4e35, 1.6e13, -2.0e-10 in five of five tries on the dev machine): the
 * backward reads the 0-d tensor DJL made over a direct buffer the GC has freed.
 */
class ScalarsTest {
    /** d(sum(c(x)))/dx, with GCs (and so the direct buffers' Cleaners) run between the forward and the backward. */
    private static float[] gradientAfterGc(BiFunction<NDManager, NDArray, NDArray> f) throws InterruptedException {
        try (NDManager m = NDManager.newBaseManager(ai.djl.Device.cpu())) {
            NDArray x = m.create(new float[] {1, 2, 3, 4}).duplicate();
            x.setRequiresGradient(true);
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray y = f.apply(m, x).sum();
                for (int i = 0; i < 3; i++) {
                    System.gc();
                    Thread.sleep(20);
                }
                gc.backward(y);
            }
            return x.getGradient().toFloatArray();
        }
    }

    @Test
    void constantsOutliveGcBetweenForwardAndBackward() throws InterruptedException {
        for (int k = 0; k < 3; k++) {
            assertArrayEquals(new float[] {3, 3, 3, 3}, gradientAfterGc((m, x) -> x.mul(Scalars.of(m, 3))));
            assertArrayEquals(new float[] {0.25f, 0.25f, 0.25f, 0.25f}, gradientAfterGc((m, x) -> x.div(Scalars.of(m, 4))));
        }
    }
}
