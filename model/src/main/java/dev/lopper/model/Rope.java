package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.config.ModelConfig;

/**
 * Rotary position embedding as HF applies it: {@code x * cos + rotate_half(x) * sin}, where rotate_half swaps
 * the two halves of the head dimension (not interleaved pairs); that matches the q/k row order of HF checkpoints.
 */
public final class Rope {
    private final double[] invFreq;
    private final int headDim;

    public Rope(ModelConfig config) {
        this.headDim = config.headDim();
        this.invFreq = config.ropeScaling().inverseFrequencies(headDim, config.ropeTheta());
    }

    /** cos and sin tables for positions start..start+len-1, each [len, headDim], fp32, in {@code manager}. */
    public NDList tables(NDManager manager, long start, int len) {
        float[] cos = new float[len * headDim];
        float[] sin = new float[len * headDim];
        int half = headDim / 2;
        for (int t = 0; t < len; t++) {
            for (int i = 0; i < half; i++) {
                // HF computes the angle in fp32; doing the same keeps long positions bit-compatible
                float angle = (float) (start + t) * (float) invFreq[i];
                float c = (float) Math.cos(angle);
                float s = (float) Math.sin(angle);
                cos[t * headDim + i] = c;
                cos[t * headDim + i + half] = c;
                sin[t * headDim + i] = s;
                sin[t * headDim + i + half] = s;
            }
        }
        Shape shape = new Shape(len, headDim);
        return new NDList(manager.create(cos, shape), manager.create(sin, shape));
    }

    /** Applies the rotation to x [B, heads, T, headDim] with tables from {@link #tables}. */
    public static NDArray apply(NDArray x, NDArray cos, NDArray sin) {
        long d = x.getShape().get(3);
        long half = d / 2;
        // built, not parsed: string indices cost a regex parse per call, i.e. per layer and decoding step
        NDArray x1 = x.get(new NDIndex().addEllipseDim().addSliceDim(0, half));
        NDArray x2 = x.get(new NDIndex().addEllipseDim().addSliceDim(half, d));
        NDArray rotated = x2.neg().concat(x1, -1);
        return x.mul(cos).add(rotated.mul(sin));
    }
}
