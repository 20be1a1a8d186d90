package dev.lopper.pruning.surgery;

import dev.lopper.pruning.Activations;
import dev.lopper.pruning.Activations;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.criteria.CriteriaBruteForceTest;
import dev.lopper.pruning.criteria.FlapCriterion;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.Decoder;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.calibration.CalibrationData;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * FLAP's bias compensation: the o_proj and down_proj biases equal W_full[:, removed] x mean(input)[removed]
 * (brute force), and they
 * lower every pruned layer's output error against the dense layer, measured on calibration and held-out data.
 */
class BiasCompensationTest {
    @TempDir
    Path tmp;

    @Test
    void biasesMatchFormulaAndLowerLayerError() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(3).withHeads(8, 4));
        long[][] calib = CriteriaBruteForceTest.windows(16, 24, 300, 3);
        long[][] heldOut = CriteriaBruteForceTest.windows(8, 24, 300, 4);
        try (ModelDir md = ModelDir.open(dir); NDManager m = NDManager.newBaseManager()) {
            ModelConfig c = md.config();
            FlapCriterion flap = new FlapCriterion();
            Scores scores = flap.score(CriteriaBruteForceTest.context(md, calib));
            List<LayerSelection> sel = Allocation.allocate(StructureGraph.of(c), scores,
                    Allocation.Options.of(0.4, Set.of("heads", "channels"), "adaptive")).resolve(c);
            Surgery.Result plain = Surgery.apply(c, md.checkpoint(), sel);
            Surgery.Result comp = flap.compensation().apply(c, md.checkpoint(), plain, m);

            Activations a = new Activations(c, md.checkpoint(), calib);
            int layersLosingHeads = 0;
            for (LayerSelection s : sel) {
                int l0 = s.layer();
                // o_proj: b = W_o[:, removed head dims] x mean(o_proj input)[removed], the full un-pruned W_o and
                // the dense model's mean over all calibration tokens
                double[] oMean = Activations.flap(a.oIn.get(l0))[0];
                double[][] wo = Activations.weight(c, md.checkpoint(), l0, "o");
                boolean[] keptDim = new boolean[oMean.length];
                for (int h : s.keptHeads()) {
                    for (int d = 0; d < c.headDim(); d++) {
                        keptDim[h * c.headDim() + d] = true;
                    }
                }
                double[] wantO = new double[wo.length];
                for (int r = 0; r < wo.length; r++) {
                    for (int j = 0; j < oMean.length; j++) {
                        wantO[r] += keptDim[j] ? 0 : wo[r][j] * oMean[j];
                    }
                }
                double[] gotO = toDouble(comp.tensors().load(WeightNames.attn(l0, "o_proj", "bias"), m));
                double normO = Math.sqrt(java.util.Arrays.stream(wantO).map(x -> x * x).sum());
                layersLosingHeads += s.keptHeads().length < c.layer(l0).numHeads() ? 1 : 0;
                assertEquals(s.keptHeads().length < c.layer(l0).numHeads(), normO > 0, "layer " + l0 + ": removed heads give a bias");
                for (int r = 0; r < wantO.length; r++) {
                    assertEquals(wantO[r], gotO[r], 1e-5 * normO, "o_proj bias layer " + l0 + " row " + r);
                }
            }
            assertTrue(layersLosingHeads > 0, "the plan removes heads somewhere, so the o_proj check is not vacuous");
            for (LayerSelection s : sel) {
                int l = s.layer();
                assertTrue(comp.config().layer(l).oProjBias() && comp.config().layer(l).downProjBias(), "layer " + l + " was pruned");
                double[] mean = Activations.flap(a.downIn.get(l))[0];
                double[][] w = Activations.weight(c, md.checkpoint(), l, "down");
                double[] want = new double[w.length];
                boolean[] kept = new boolean[mean.length];
                for (int k : s.keptChannels()) {
                    kept[k] = true;
                }
                for (int r = 0; r < w.length; r++) {
                    for (int j = 0; j < mean.length; j++) {
                        want[r] += kept[j] ? 0 : w[r][j] * mean[j];
                    }
                }
                double[] got = toDouble(comp.tensors().load(WeightNames.mlp(l, "down_proj", "bias"), m));
                double norm = Math.sqrt(java.util.Arrays.stream(want).map(x -> x * x).sum());
                for (int r = 0; r < want.length; r++) {
                    assertEquals(want[r], got[r], 1e-5 * norm, "down_proj bias layer " + l + " row " + r);
                }
            }
            for (long[][] windows : List.of(calib, heldOut)) {
                double[] without = layerErrors(c, md.checkpoint(), plain, windows);
                double[] with = layerErrors(c, md.checkpoint(), comp, windows);
                for (int l = 0; l < without.length; l++) {
                    assertTrue(with[l] < without[l], "layer " + l + ": error with compensation " + with[l] + " vs without " + without[l]);
                }
            }
        }
    }

    /** On the fixture model (KJV calibration, held-out KJV test text): compensation lowers the layers' total error. */
    @Test
    void lowersLayerErrorOnTheFixture() throws Exception {
        Assumptions.assumeTrue(Files.exists(Fixtures.root().resolve("fixtures/lopper-tiny/model.safetensors")),
                "fixtures/lopper-tiny not trained yet");
        Path fixture = Fixtures.tinyModel();
        try (ModelDir md = ModelDir.open(fixture); NDManager m = NDManager.newBaseManager()) {
            ModelConfig c = md.config();
            Tokenizer tok = md.tokenizer();
            // small splits keep tokenization quick: calibrate on valid, measure on test (held out from both)
            long[][] calib = CalibrationData.load(Fixtures.text("valid"), tok, 64, 128, 0, "text", null).windows();
            long[][] heldOut = CalibrationData.load(Fixtures.text("test"), tok, 32, 128, 1, "text", null).windows();
            FlapCriterion flap = new FlapCriterion();
            Scores scores = flap.score(CriteriaBruteForceTest.context(md, calib));
            List<LayerSelection> sel = Allocation.allocate(StructureGraph.of(c), scores,
                    Allocation.Options.of(0.3, Set.of("heads", "channels"), "adaptive")).resolve(c);
            Surgery.Result plain = Surgery.apply(c, md.checkpoint(), sel);
            Surgery.Result comp = flap.compensation().apply(c, md.checkpoint(), plain, m);
            double[] without = layerErrors(c, md.checkpoint(), plain, heldOut);
            double[] with = layerErrors(c, md.checkpoint(), comp, heldOut);
            double sumWithout = 0, sumWith = 0;
            for (int l = 0; l < without.length; l++) {
                sumWithout += without[l];
                sumWith += with[l];
            }
            assertTrue(sumWith < sumWithout, "total layer error with compensation " + sumWith + " vs without " + sumWithout
                    + "; per layer without " + java.util.Arrays.toString(without) + ", with " + java.util.Arrays.toString(with));
        }
    }

    /**
     * Per original layer: mean squared difference between the dense layer's output and the pruned layer's output,
     * both fed the dense model's input to that layer (so errors do not compound).
     */
    static double[] layerErrors(ModelConfig c, TensorSource dense, Surgery.Result pruned, long[][] windows) {
        int n = windows.length;
        int t = windows[0].length;
        double[] err = new double[c.numLayers()];
        try (LlamaModel model = LlamaModel.load(c, dense, Device.cpu()); NDManager m = NDManager.newBaseManager()) {
            long[] flat = new long[n * t];
            for (int i = 0; i < n; i++) {
                System.arraycopy(windows[i], 0, flat, i * t, t);
            }
            NDList rope = model.ropeTables(m, t);
            NDArray mask = model.mask(m, t, null);
            NDArray h = model.embed(m, m.create(flat, new Shape(n, t)));
            for (int l = 0; l < c.numLayers(); l++) {
                NDArray out = model.layer(l, h, rope, mask, LayerHooks.NONE);
                int j = pruned.newIndex(l);
                try (NDManager scope = m.newSubManager()) {
                    LayerWeights pw = LayerWeights.load(pruned.tensors(), pruned.config(), j, scope);
                    NDArray po = Decoder.layer(pw, h, rope.get(0), rope.get(1), mask, c.rmsNormEps(), c.headDim(), LayerHooks.NONE);
                    err[l] = po.sub(out).square().mean().getFloat();
                }
                h = out;
            }
        }
        return err;
    }

    static double[] toDouble(NDArray a) {
        float[] f = a.toFloatArray();
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }
}
