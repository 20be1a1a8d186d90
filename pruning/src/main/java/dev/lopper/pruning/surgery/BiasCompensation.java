package dev.lopper.pruning.surgery;

import dev.lopper.pruning.graph.LayerSelection;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.io.TensorSource;

import java.util.ArrayList;
import java.util.List;

/**
 * FLAP's bias compensation, the one place Lopper applies it: after surgery, each pruned layer gets
 * <pre>
 *   o_proj.bias    += W_o[:, removed]    @ mean(o_proj input)[removed]
 *   down_proj.bias += W_down[:, removed] @ mean(down_proj input)[removed]
 * </pre>
 * with the <b>un-pruned</b> weights and the dense model's calibration means (FLAP {@code compress(bias=True)}).
 * The removed channels' average contribution to the layer output is thus restored as a constant. LLaMA has no
 * such biases: the layer shapes get {@link LayerShape#oProjBias()}/{@link LayerShape#downProjBias()} set, so
 * the config is written with {@code lopper_layers} and the model loads them.
 */
public final class BiasCompensation implements PostSurgery {
    private final double[][] oProjInputMean;
    private final double[][] downProjInputMean;

    /**
     * @param oProjInputMean per original layer, the mean of each o_proj input channel over calibration tokens
     * @param downProjInputMean per original layer, the mean of each down_proj input channel
     */
    public BiasCompensation(double[][] oProjInputMean, double[][] downProjInputMean) {
        this.oProjInputMean = oProjInputMean;
        this.downProjInputMean = downProjInputMean;
    }

    public double[] oProjInputMean(int layer) {
        return oProjInputMean[layer].clone();
    }

    public double[] downProjInputMean(int layer) {
        return downProjInputMean[layer].clone();
    }

    /**
     * Adds the compensation biases to a surgery result.
     *
     * @param original the config the plan was made for
     * @param originalWeights the un-pruned weights
     * @param pruned the surgery result
     * @param manager owns the new bias tensors; must stay open until the result is saved
     */
    @Override
    public String description() {
        return "bias compensation (FLAP): o_proj/down_proj biases added";
    }

    @Override
    public Surgery.Result apply(ModelConfig original, TensorSource originalWeights, Surgery.Result pruned,
                                NDManager manager) {
        TensorMap out = new TensorMap(pruned.tensors());
        List<LayerShape> shapes = new ArrayList<>(pruned.config().layers());
        int hd = original.headDim();
        for (LayerSelection s : pruned.selections()) {
            int i = s.layer();
            int j = pruned.newIndex(i);
            if (j < 0 || s.unchanged(original.layer(i))) {
                continue;
            }
            LayerShape before = original.layer(i);
            LayerShape shape = shapes.get(j);
            boolean[] headKept = mask(before.numHeads(), s.keptHeads());
            int[] removedO = removedChannels(headKept, hd);
            boolean oBias = shape.oProjBias();
            if (removedO.length > 0) {
                String name = WeightNames.attn(j, "o_proj", "bias");
                double[] b = compensation(originalWeights, WeightNames.attn(i, "o_proj", "weight"), removedO, oProjInputMean[i]);
                out.put(name, bias(manager, b, before.oProjBias() ? originalWeights.load(WeightNames.attn(i, "o_proj", "bias"), manager) : null));
                oBias = true;
            }
            boolean[] chKept = mask(before.intermediateSize(), s.keptChannels());
            int[] removedD = removedChannels(chKept, 1);
            boolean dBias = shape.downProjBias();
            if (removedD.length > 0) {
                String name = WeightNames.mlp(j, "down_proj", "bias");
                double[] b = compensation(originalWeights, WeightNames.mlp(i, "down_proj", "weight"), removedD, downProjInputMean[i]);
                out.put(name, bias(manager, b, before.downProjBias() ? originalWeights.load(WeightNames.mlp(i, "down_proj", "bias"), manager) : null));
                dBias = true;
            }
            shapes.set(j, shape.withBiases(oBias, dBias));
        }
        return new Surgery.Result(pruned.config().withLayers(shapes), out, pruned.selections());
    }

    /**
     * b_r = sum_{c in removed} W[r, c] * mean[c], W the full [hidden, in] weight: one fp64 mat-vec off the Java heap
     * with the kept channels' means zeroed.
     */
    static double[] compensation(TensorSource weights, String name, int[] removed, double[] mean) {
        double[] masked = new double[mean.length];
        for (int c : removed) {
            masked[c] = mean[c];
        }
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray w = weights.load(name, m, DataType.FLOAT32).toType(DataType.FLOAT64, false);
            return w.matMul(m.create(masked).reshape(mean.length, 1)).toDoubleArray();
        }
    }

    private static NDArray bias(NDManager manager, double[] b, NDArray existing) {
        float[] f = new float[b.length];
        float[] old = existing == null ? null : existing.toType(DataType.FLOAT32, false).toFloatArray();
        for (int i = 0; i < f.length; i++) {
            f[i] = (float) (b[i] + (old == null ? 0 : old[i]));
        }
        return manager.create(f);
    }

    private static boolean[] mask(int n, int[] kept) {
        boolean[] m = new boolean[n];
        for (int k : kept) {
            m[k] = true;
        }
        return m;
    }

    /** Input channels of removed units of width {@code width}. */
    private static int[] removedChannels(boolean[] kept, int width) {
        List<Integer> out = new ArrayList<>();
        for (int u = 0; u < kept.length; u++) {
            if (!kept[u]) {
                for (int c = 0; c < width; c++) {
                    out.add(u * width + c);
                }
            }
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }
}
