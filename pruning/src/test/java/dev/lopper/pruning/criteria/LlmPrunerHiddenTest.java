package dev.lopper.pruning.criteria;

import ai.djl.Device;
import dev.lopper.calibration.gradient.LayerParam;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.criteria.LlmPrunerCriterion.Grouping;
import dev.lopper.pruning.criteria.LlmPrunerCriterion.Taylor;
import dev.lopper.pruning.graph.StructureGraph;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * LLM-Pruner's channel-wise (hidden-dimension) Taylor score against plain loops over the per-window gradients of an
 * independent whole-model backward ({@link GradientReference}): per coupled tensor, sum |W G| (vectorize: |sum W G|)
 * over its slice at each residual channel, then the grouping strategy over the tensors.
 */
class LlmPrunerHiddenTest {
    @TempDir
    Path tmp;

    @Test
    void channelWiseTaylorMatchesPlainLoops() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.Spec spec = RandomModels.llama().withLayers(2).withHeads(4, 2);
        RandomModels.write(dir, spec);
        long[][] w = CriteriaBruteForceTest.windows(3, 10, spec.vocab(), 9);
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            int d = c.hiddenSize();
            GradientReference ref = new GradientReference(c, md.checkpoint(), w);
            for (LlmPrunerCriterion crit : List.of(new LlmPrunerCriterion(Taylor.PARAM_FIRST, Grouping.SUM),
                    new LlmPrunerCriterion(Taylor.VECTORIZE, Grouping.MAX))) {
                List<double[]> members = new ArrayList<>();
                for (int l = 0; l < c.numLayers(); l++) {
                    for (LayerParam p : LayerParam.values()) {
                        int axis = LlmPrunerCriterion.hiddenAxis(p);
                        String name = p.tensorName(l);
                        if (axis < 0 || !ref.weights.containsKey(name)) {
                            continue;
                        }
                        double[] s = GradientCriteriaTest.salience(ref, name, crit.taylor());
                        long[] shape = ref.shapes.get(name);
                        double[] v = new double[d];
                        if (shape.length == 1) {
                            for (int j = 0; j < d; j++) {
                                v[j] = crit.taylor() == Taylor.VECTORIZE ? s[j] : Math.abs(s[j]);
                            }
                        } else {
                            int rows = (int) shape[0];
                            int cols = (int) shape[1];
                            for (int r = 0; r < rows; r++) {
                                for (int k = 0; k < cols; k++) {
                                    double x = crit.taylor() == Taylor.VECTORIZE ? s[r * cols + k] : Math.abs(s[r * cols + k]);
                                    v[axis == 0 ? r : k] += x;
                                }
                            }
                        }
                        if (crit.taylor() == Taylor.VECTORIZE) {
                            for (int j = 0; j < d; j++) {
                                v[j] = Math.abs(v[j]);
                            }
                        }
                        members.add(v);
                    }
                }
                Allocation.Options o = Allocation.Options.of(0.25, Set.of("hidden"), "uniform");
                Scores got = crit.score(new ScoringContext(c, md.checkpoint(), StructureGraph.of(c), Device.cpu(), w, null, 0, null,
                        null, o, 512, null));
                for (int j = 0; j < d; j++) {
                    double want = crit.grouping() == Grouping.SUM ? 0 : Double.NEGATIVE_INFINITY;
                    for (double[] v : members) {
                        want = crit.grouping() == Grouping.SUM ? want + v[j] : Math.max(want, v[j]);
                    }
                    assertEquals(want, got.hidden()[j], 1e-4 * Math.abs(want) + 1e-9, crit.options() + " channel " + j);
                }
            }
        }
    }
}
