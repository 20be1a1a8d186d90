package dev.lopper.calibration;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;

/**
 * How much each decoder layer changes its input, from its input and output hidden states: CFSP's
 * {@code block_influence}, summed over every calibration token. Per token, with cos the cosine similarity of
 * x_in and x_out (0.5 where undefined, as the official code's nan_to_num):
 * angular = arccos(cos)/pi, cosine = 1 - cos.
 */
public final class BlockInfluence implements StatsCollector {
    private final double[] angular;
    private final double[] cosine;

    public BlockInfluence(int layers) {
        this.angular = new double[layers];
        this.cosine = new double[layers];
    }

    @Override
    public boolean wantsLayerIO() {
        return true;
    }

    @Override
    public void layerIO(int layer, NDArray input, NDArray output) {
        try (NDManager scope = output.getManager().newSubManager()) {
            NDArray in = input.toType(DataType.FLOAT64, true);
            in.attach(scope);
            NDArray out = output.toType(DataType.FLOAT64, true);
            out.attach(scope);
            NDArray dot = in.mul(out).sum(new int[] {-1});
            NDArray norms = in.norm(new int[] {-1}).mul(out.norm(new int[] {-1}));
            double[] d = dot.toDoubleArray();
            double[] nn = norms.toDoubleArray();
            for (int i = 0; i < d.length; i++) {
                double c = d[i] / nn[i];
                if (Double.isNaN(c)) {
                    c = 0.5;
                }
                c = Math.max(-1, Math.min(1, c));
                angular[layer] += Math.acos(c) / Math.PI;
                cosine[layer] += 1 - c;
            }
        }
    }

    /** Sum over tokens of arccos(cos(x_in, x_out))/pi, per layer. */
    public double[] angular() {
        return angular.clone();
    }

    /** Sum over tokens of 1 - cos(x_in, x_out), per layer. */
    public double[] cosine() {
        return cosine.clone();
    }

    @Override
    public boolean resumable() {
        return true;
    }

    @Override
    public void saveLayer(int layer, java.io.DataOutputStream out) throws java.io.IOException {
        out.writeDouble(angular[layer]);
        out.writeDouble(cosine[layer]);
    }

    @Override
    public void loadLayer(int layer, java.io.DataInputStream in) throws java.io.IOException {
        angular[layer] = in.readDouble();
        cosine[layer] = in.readDouble();
    }
}
