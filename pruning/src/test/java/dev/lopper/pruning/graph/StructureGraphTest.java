package dev.lopper.pruning.graph;

import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.model.ModelStats;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The graph's two descriptions (structure sets for criteria, tensor axes for surgery) agree, and counts add up. */
class StructureGraphTest {
    @TempDir
    Path tmp;

    @Test
    void setsAndTensorAxesAgree() throws Exception {
        for (RandomModels.Spec spec : List.of(RandomModels.llama().withHeads(8, 2).withQkvBias(true), RandomModels.llama().withHeads(4, 4),
                RandomModels.llama().withFamily(Family.QWEN3).withSize(64, 24, 96), RandomModels.llama().withFamily(Family.PHI3))) {
            ModelConfig c = RandomModels.write(tmp.resolve("m" + spec.family() + spec.heads() + spec.kvHeads()), spec);
            StructureGraph g = StructureGraph.of(c);
            LayerShape s = c.layer(0);
            Map<String, StructureGraph.Tensor> tensors = g.layerTensors(0).stream()
                    .collect(Collectors.toMap(StructureGraph.Tensor::name, Function.identity()));
            for (StructureGraph.Member m : g.kvGroups(0).members()) {
                StructureGraph.Tensor t = tensors.get(m.tensor());
                assertEquals(m.axis(), Math.max(t.headAxis(), t.kvAxis()), m.tensor());
                assertEquals(m.width() * s.numKvHeads() * m.cross(), t.elements(), m.tensor() + " fully covered by the groups");
            }
            for (StructureGraph.Member m : g.queryHeads(0).members()) {
                assertEquals(m.axis(), tensors.get(m.tensor()).headAxis(), m.tensor());
            }
            for (StructureGraph.Member m : g.mlpChannels(0).members()) {
                assertEquals(m.axis(), tensors.get(m.tensor()).channelAxis(), m.tensor());
            }
            long layerParams = g.layerTensors(0).stream().mapToLong(StructureGraph.Tensor::elements).sum();
            assertEquals(ModelStats.layerParameters(c, s), layerParams);
            assertEquals(layerParams, g.layer(0).parametersPerUnit());
            // the attention part of the layer is exactly the KV groups (plus the never-cut o_proj bias)
            long attn = Allocation.prunable(c, s, true, false, false);
            assertEquals(attn, g.kvGroups(0).parametersPerUnit() * s.numKvHeads());
            assertEquals(3L * c.hiddenSize() * s.intermediateSize(), g.mlpChannels(0).parametersPerUnit() * s.intermediateSize());
            assertEquals(1, g.groupOf(0, s.groupSize()));
            assertTrue(g.layerTensors(0).stream().filter(StructureGraph.Tensor::whole).allMatch(t -> t.elements() == c.hiddenSize()
                            || c.family().hasQkNorm() && t.elements() == c.headDim()),
                    "only hidden-size vectors (norms, o/down biases) and Qwen3's head_dim q/k norms are never cut");
            // the graph lists exactly the tensors of the layer (logical names: Phi-3's fused tensors appear split)
            try (ModelDir md = ModelDir.open(tmp.resolve("m" + spec.family() + spec.heads() + spec.kvHeads()))) {
                assertEquals(md.checkpoint().names().stream().filter(n -> WeightNames.layerOf(n) == 0).collect(Collectors.toSet()),
                        tensors.keySet(), spec.family().toString());
            }
        }
    }
}
