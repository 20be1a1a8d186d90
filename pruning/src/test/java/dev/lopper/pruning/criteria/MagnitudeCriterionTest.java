package dev.lopper.pruning.criteria;

import dev.lopper.pruning.graph.StructureGraph;
import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Magnitude scores against plain loops over the weights, written without the structure graph. */
class MagnitudeCriterionTest {
    @TempDir
    Path tmp;

    @Test
    void scoresAreMeanAbsPowerOverEachGroupsWeights() throws Exception {
        // GQA 8/2 with LLaMA attention_bias: q/k/v biases are members, the o_proj bias is not
        RandomModels.write(tmp.resolve("m"), RandomModels.llama().withHeads(8, 2).withQkvBias(true));
        try (ModelDir md = ModelDir.open(tmp.resolve("m"))) {
            ModelConfig c = md.config();
            for (int p : new int[] {1, 2}) {
                Scores s = new MagnitudeCriterion(p).score(ScoringContext.of(c, md.checkpoint(), Device.cpu()));
                assertTrue(s.comparableAcrossLayers());
                assertEquals(StructureGraph.Kind.KV_GROUP, s.headUnit());
                int d = c.headDim();
                for (int l = 0; l < c.numLayers(); l++) {
                    W w = new W(md.checkpoint(), l, p);
                    for (int g = 0; g < 2; g++) {
                        double sum = w.rows("q_proj", g * 4 * d, (g + 1) * 4 * d) + w.rows("k_proj", g * d, (g + 1) * d)
                                + w.rows("v_proj", g * d, (g + 1) * d) + w.cols("o_proj", g * 4 * d, (g + 1) * 4 * d)
                                + w.bias("q_proj", g * 4 * d, (g + 1) * 4 * d) + w.bias("k_proj", g * d, (g + 1) * d)
                                + w.bias("v_proj", g * d, (g + 1) * d);
                        long n = 4L * d * 64 * 2 + 2L * d * 64 + 4L * d + 2L * d;
                        assertEquals(sum / n, s.kvGroups()[l][g], 1e-5 * sum / n, "L" + p + " layer " + l + " group " + g);
                    }
                    for (int h = 0; h < 8; h++) {
                        double sum = w.rows("q_proj", h * d, (h + 1) * d) + w.cols("o_proj", h * d, (h + 1) * d) + w.bias("q_proj", h * d, (h + 1) * d);
                        long n = 2L * d * 64 + d;
                        assertEquals(sum / n, s.queryHeads()[l][h], 1e-5 * sum / n, "head " + h);
                    }
                    for (int ch : new int[] {0, 17, 95}) {
                        double sum = w.mlpRow("gate_proj", ch) + w.mlpRow("up_proj", ch) + w.mlpCol(ch);
                        assertEquals(sum / (3 * 64), s.channels()[l][ch], 1e-5 * sum / 192, "channel " + ch);
                    }
                }
            }
        }
    }

    /** Plain float loops over one layer's tensors. */
    private record W(TensorSource src, int layer, int p) {
        private float[] load(String name) {
            try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
                return src.load(name, m).toFloatArray();
            }
        }

        private double pow(float x) {
            return p == 1 ? Math.abs(x) : (double) x * x;
        }

        double rows(String proj, int from, int to) {
            float[] v = load(WeightNames.attn(layer, proj, "weight"));
            double s = 0;
            for (int r = from; r < to; r++) {
                for (int k = 0; k < 64; k++) {
                    s += pow(v[r * 64 + k]);
                }
            }
            return s;
        }

        double cols(String proj, int from, int to) {
            float[] v = load(WeightNames.attn(layer, proj, "weight"));
            int in = v.length / 64;
            double s = 0;
            for (int r = 0; r < 64; r++) {
                for (int k = from; k < to; k++) {
                    s += pow(v[r * in + k]);
                }
            }
            return s;
        }

        double bias(String proj, int from, int to) {
            float[] v = load(WeightNames.attn(layer, proj, "bias"));
            double s = 0;
            for (int i = from; i < to; i++) {
                s += pow(v[i]);
            }
            return s;
        }

        double mlpRow(String proj, int ch) {
            float[] v = load(WeightNames.mlp(layer, proj, "weight"));
            double s = 0;
            for (int k = 0; k < 64; k++) {
                s += pow(v[ch * 64 + k]);
            }
            return s;
        }

        double mlpCol(int ch) {
            float[] v = load(WeightNames.mlp(layer, "down_proj", "weight"));
            double s = 0;
            for (int r = 0; r < 64; r++) {
                s += pow(v[r * 96 + ch]);
            }
            return s;
        }
    }
}
