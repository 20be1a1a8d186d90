package dev.lopper.pruning.criteria;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.PlainLlama;
import dev.lopper.pruning.Reference;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Set;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Minitron's activation importance against plain loops over {@link PlainLlama}'s stream: the norm outputs and the
 * down_proj inputs recomputed by hand, aggregated as Model-Optimizer's hooks do (mean |y| over a sample's tokens,
 * squared, summed over samples, square root; hidden: summed over every layer's two norms).
 */
class MinitronCriterionTest {
    @TempDir
    Path tmp;

    @Test
    void hiddenAndMlpScoresMatchPlainLoops() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(2).withHeads(4, 2));
        try (ModelDir md = ModelDir.open(dir); NDManager m = NDManager.newBaseManager()) {
            ModelConfig c = md.config();
            int d = c.hiddenSize();
            long[][] windows = new long[3][];
            for (int i = 0; i < windows.length; i++) {
                long[] ids = Reference.ids(7, c.vocabSize());
                for (int j = 0; j < ids.length; j++) {
                    ids[j] = (ids[j] * (i + 2) + 3 * i) % c.vocabSize();
                }
                windows[i] = ids;
            }
            double[] hidden = new double[d];
            for (int l = 0; l < c.numLayers(); l++) {
                double[] inW = PlainLlama.vec(md.checkpoint(), WeightNames.inputNorm(l), m);
                double[] postW = PlainLlama.vec(md.checkpoint(), WeightNames.postAttentionNorm(l), m);
                double[][] gate = PlainLlama.mat(md.checkpoint(), WeightNames.mlp(l, "gate_proj", "weight"), m);
                double[][] up = PlainLlama.mat(md.checkpoint(), WeightNames.mlp(l, "up_proj", "weight"), m);
                int im = gate.length;
                double[] aIn = new double[d];
                double[] aPost = new double[d];
                double[] aDown = new double[im];
                for (long[] w : windows) {
                    PlainLlama.Trace t = PlainLlama.trace(c, md.checkpoint(), IntStream.range(0, d).toArray(), PlainLlama.Mode.DROPPED, w, -1, null);
                    double[] meanIn = new double[d];
                    double[] meanPost = new double[d];
                    double[] meanDown = new double[im];
                    for (int p = 0; p < w.length; p++) {
                        double[] n1 = norm(t.stream()[l][p], inW, c.rmsNormEps());
                        double[] n2 = norm(t.mid()[l][p], postW, c.rmsNormEps());
                        for (int j = 0; j < d; j++) {
                            meanIn[j] += Math.abs(n1[j]) / w.length;
                            meanPost[j] += Math.abs(n2[j]) / w.length;
                        }
                        for (int i = 0; i < im; i++) {
                            double g = 0;
                            double u = 0;
                            for (int j = 0; j < d; j++) {
                                g += gate[i][j] * n2[j];
                                u += up[i][j] * n2[j];
                            }
                            meanDown[i] += Math.abs(g / (1 + Math.exp(-g)) * u) / w.length;
                        }
                    }
                    for (int j = 0; j < d; j++) {
                        aIn[j] += meanIn[j] * meanIn[j];
                        aPost[j] += meanPost[j] * meanPost[j];
                    }
                    for (int i = 0; i < im; i++) {
                        aDown[i] += meanDown[i] * meanDown[i];
                    }
                }
                for (int j = 0; j < d; j++) {
                    hidden[j] += Math.sqrt(aIn[j]) + Math.sqrt(aPost[j]);
                }
                Scores s = score(c, md, windows);
                for (int i = 0; i < im; i++) {
                    assertEquals(Math.sqrt(aDown[i]), s.channels()[l][i], 1e-4 * Math.sqrt(aDown[i]) + 1e-7, "layer " + l + " channel " + i);
                }
            }
            Scores s = score(c, md, windows);
            for (int j = 0; j < d; j++) {
                assertEquals(hidden[j], s.hidden()[j], 1e-4 * hidden[j], "hidden channel " + j);
            }
            PruningPlan plan = Allocation.allocate(StructureGraph.of(c), s, Allocation.Options.of(0.25, Set.of("hidden"), "uniform"));
            assertEquals(d - d / 4, plan.hidden().keptChannels().length);
        }
    }

    private static Scores score(ModelConfig c, ModelDir md, long[][] windows) {
        return new MinitronCriterion().score(new ScoringContext(c, md.checkpoint(), StructureGraph.of(c), Device.cpu(), windows,
                null, 0, null, null, Allocation.Options.of(0.25, Set.of("hidden"), "uniform"), 14, null));
    }

    private static double[] norm(double[] x, double[] w, double eps) {
        double ss = 0;
        for (double v : x) {
            ss += v * v;
        }
        double r = 1 / Math.sqrt(ss / x.length + eps);
        double[] out = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            out[i] = x[i] * r * w[i];
        }
        return out;
    }
}
