package dev.lopper.pruning.surgery;

import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.allocation.UniformAllocation;
import dev.lopper.pruning.Reference;
import ai.djl.Device;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelStats;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The exact invariants of surgery (issue 4, item 4/5) on tiny random models of every family variant. */
class SurgeryTest {
    static final double TOL = 1e-5;

    @TempDir
    Path tmp;

    /** GQA 8/2, MHA 4/4 tied, Qwen2 biases (GQA 4/2), LLaMA attention_bias (q/k/v/o biases, MQA 4/1), Qwen3, Phi-3. */
    static Stream<RandomModels.Spec> variants() {
        RandomModels.Spec base = RandomModels.llama().withLayers(3);
        return Stream.of(
                base.withHeads(8, 2).withShards(3),                 // sharded checkpoint
                base.withHeads(4, 4).withTied(true),
                base.withFamily(Family.QWEN2),
                base.withHeads(4, 1).withQkvBias(true),
                base.withFamily(Family.QWEN3).withHeads(4, 2).withSize(64, 24, 96), // q/k norms, head_dim != hidden/heads
                base.withFamily(Family.PHI3).withHeads(8, 2));                     // fused qkv_proj / gate_up_proj
    }

    @ParameterizedTest
    @MethodSource("variants")
    void emptyPlanGivesBitIdenticalLogits(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        long[] ids = Reference.ids(20, spec.vocab());
        try (ModelDir md = ModelDir.open(dir)) {
            Surgery.Result r = Surgery.apply(md.config(), md.checkpoint(), PruningPlan.empty());
            float[][] want;
            float[][] got;
            try (LlamaModel a = md.loadModel(Device.cpu()); LlamaModel b = LlamaModel.load(r.config(), r.tensors(), Device.cpu())) {
                want = a.logits(ids);
                got = b.logits(ids);
            }
            for (int t = 0; t < ids.length; t++) {
                assertArrayEquals(want[t], got[t], 0f, "position " + t);
            }
            assertEquals(md.config().layers(), r.config().layers());
        }
    }

    @ParameterizedTest
    @MethodSource("variants")
    void removingStructuresEqualsZeroingThem(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            List<LayerSelection> sel = cuts(c);
            assertNoChange(md, sel, false);
        }
    }

    @ParameterizedTest
    @MethodSource("variants")
    void removingALayerEqualsSkippingIt(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            List<LayerSelection> sel = List.of(LayerSelection.whole(0, c.layer(0)), LayerSelection.dropped(1),
                    LayerSelection.whole(2, c.layer(2)));
            Surgery.Result r = assertNoChange(md, sel, false);
            assertEquals(2, r.config().numLayers());
            assertTrue(r.tensors().has(WeightNames.attn(1, "q_proj", "weight")));
            assertFalse(r.tensors().has(WeightNames.attn(2, "q_proj", "weight")), "layer 2 renumbered to 1");
            assertEquals(-1, r.newIndex(1));
            assertEquals(1, r.newIndex(2));
        }
    }

    /** Layers removed and structures cut at once, saved, reloaded: identical logits, non-uniform config. */
    @ParameterizedTest
    @MethodSource("variants")
    void saveAndReloadGivesIdenticalLogits(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            List<LayerSelection> sel = cuts(c);
            sel = List.of(sel.get(0), LayerSelection.dropped(1), sel.get(2));
            assertNoChange(md, sel, true);
        }
    }

    /**
     * With target "layers", a kept layer may lose every head (only its o_proj bias stays) or every channel: the
     * result still equals the zeroed model, and saves and reloads (zero-row tensors, lopper_layers with 0 heads).
     */
    @Test
    void emptiedModulesEqualZeroingAndReload() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(3).withHeads(4, 2).withQkvBias(true)); // LLaMA attention_bias: o_proj bias too
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            List<LayerSelection> sel = List.of(LayerSelection.whole(0, c.layer(0)),
                    new LayerSelection(1, false, new int[0], new int[0], LayerSelection.range(96)),
                    new LayerSelection(2, false, LayerSelection.range(2), LayerSelection.range(4), new int[0]));
            PruningPlan plan = Allocation.toPlan(c, sel, PruningPlan.empty());
            assertThrows(IllegalArgumentException.class, () -> plan.validate(c), "not allowed without target 'layers'");
            PruningPlan allowed = plan.withProvenance("manual", null, null, List.of("heads", "channels", "layers"), null, null, null);
            assertEquals(sel, allowed.resolve(c));
            Surgery.Result r = Surgery.apply(c, md.checkpoint(), allowed);
            assertEquals(new LayerShape(0, 0, 96, true, false), r.config().layer(1));
            long[] ids = Reference.ids(20, c.vocabSize());
            float[][] want = Reference.zeroedLogits(c, md.checkpoint(), sel, ids);
            float[][] got;
            try (LlamaModel m = LlamaModel.load(r.config(), r.tensors(), Device.cpu())) {
                got = m.logits(ids);
            }
            assertTrue(Reference.maxAbsDiff(want, got) <= TOL, "diff " + Reference.maxAbsDiff(want, got));
            Path out = tmp.resolve("out");
            Surgery.save(r, out, dir, allowed);
            try (ModelDir back = ModelDir.open(out); LlamaModel m = back.loadModel(Device.cpu())) {
                assertEquals(r.config().layers(), back.config().layers());
                float[][] again = m.logits(ids);
                for (int t = 0; t < ids.length; t++) {
                    assertArrayEquals(got[t], again[t], 0f);
                }
            }
        }
    }

    /** A uniform result writes a standard HF config (no lopper_layers) with the new counts. */
    @Test
    void uniformResultWritesStandardConfig() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withHeads(8, 2).withLayers(2));
        try (ModelDir md = ModelDir.open(dir)) {
            ModelConfig c = md.config();
            List<LayerSelection> sel = List.of(
                    new LayerSelection(0, false, new int[] {1}, new int[] {4, 5, 6, 7}, Allocation.complement(96, new int[] {0, 5, 9})),
                    new LayerSelection(1, false, new int[] {0}, new int[] {0, 1, 2, 3}, Allocation.complement(96, new int[] {1, 2, 3})));
            Surgery.Result r = Surgery.apply(c, md.checkpoint(), sel);
            Path out = tmp.resolve("out");
            Surgery.save(r, out, dir, null);
            JsonNode json = new ObjectMapper().readTree(out.resolve("config.json").toFile());
            assertFalse(json.has("lopper_layers"));
            assertEquals(4, json.get("num_attention_heads").intValue());
            assertEquals(1, json.get("num_key_value_heads").intValue());
            assertEquals(93, json.get("intermediate_size").intValue());
            assertEquals(2, json.get("num_hidden_layers").intValue());
            assertTrue(Files.exists(out.resolve("tokenizer.json")));
        }
    }

    /**
     * Cuts in every layer of a 3-layer model: layer 0 loses a KV group (with its query heads) and channels, layer 1
     * loses query heads inside every group (GQA) or a head (MHA) and channels, layer 2 only channels.
     */
    static List<LayerSelection> cuts(ModelConfig c) {
        LayerShape s0 = c.layer(0);
        LayerShape s1 = c.layer(1);
        LayerShape s2 = c.layer(2);
        int[] g0 = s0.numKvHeads() > 1 ? new int[] {s0.numKvHeads() - 1} : new int[] {};
        int[] kept0 = Allocation.complement(s0.numKvHeads(), g0);
        LayerSelection l0 = new LayerSelection(0, false, kept0, Allocation.headsOfGroups(s0, kept0),
                Allocation.complement(s0.intermediateSize(), new int[] {0, 7, 8, 50, 95}));
        int[] heads1;
        int gs = s1.groupSize();
        if (gs > 1) {
            // scrambled scores, so that the kept heads are not simply the first of each group
            double[] scores = new double[s1.numHeads()];
            Arrays.setAll(scores, h -> (h * 5 + 3) % s1.numHeads());
            heads1 = UniformAllocation.keepPerGroup(s1, scores, gs / 2);
        } else {
            heads1 = Allocation.complement(s1.numHeads(), new int[] {1});
        }
        int[] groups1 = gs > 1 ? LayerSelection.range(s1.numKvHeads()) : heads1;
        LayerSelection l1 = new LayerSelection(1, false, groups1, heads1,
                Allocation.complement(s1.intermediateSize(), new int[] {3, 4, 5, 90}));
        LayerSelection l2 = new LayerSelection(2, false, LayerSelection.range(s2.numKvHeads()), LayerSelection.range(s2.numHeads()),
                Allocation.complement(s2.intermediateSize(), LayerSelection.range(40)));
        return List.of(l0, l1, l2);
    }

    /**
     * Applies {@code sel} and checks: logits equal the zeroed reference (<= 1e-5), parameter count = formula, and
     * optionally that a save + reload gives identical logits and the parameter count of the saved tensors.
     */
    private Surgery.Result assertNoChange(ModelDir md, List<LayerSelection> sel, boolean save) throws Exception {
        ModelConfig c = md.config();
        long[] ids = Reference.ids(20, c.vocabSize());
        PruningPlan plan = Allocation.toPlan(c, sel, PruningPlan.empty());
        plan.validate(c);
        assertEquals(sel, plan.resolve(c), "plan round trip of the selections");
        Surgery.Result r = Surgery.apply(c, md.checkpoint(), plan);
        float[][] want = Reference.zeroedLogits(c, md.checkpoint(), sel, ids);
        float[][] got;
        try (LlamaModel pruned = LlamaModel.load(r.config(), r.tensors(), Device.cpu())) {
            got = pruned.logits(ids);
        }
        double diff = Reference.maxAbsDiff(want, got);
        dev.lopper.model.testing.TestLog.printf("SurgeryTest %s: removed vs zeroed max abs diff %.3g%n", c.family(), diff);
        assertTrue(diff <= TOL, "max abs diff vs zeroed reference " + diff);
        try (LlamaModel original = md.loadModel(Device.cpu())) {
            // the cut must matter, or the comparison above proves nothing
            assertTrue(Reference.maxAbsDiff(original.logits(ids), got) > 1e-3, "pruning changed nothing");
        }
        long tensorParams = r.tensors().names().stream().mapToLong(n -> r.tensors().shape(n).size()).sum();
        assertEquals(ModelStats.parameters(r.config()), tensorParams, "parameter count = formula from the plan");
        assertEquals(Allocation.result(c, sel, true, true, true, 0, 0).paramsAfter(), tensorParams);
        if (save) {
            Path out = tmp.resolve("out");
            Surgery.save(r, out, md.path(), plan);
            assertTrue(Files.exists(out.resolve(Surgery.PLAN_FILE)));
            try (ModelDir back = ModelDir.open(out); LlamaModel m = back.loadModel(Device.cpu())) {
                assertEquals(r.config().layers(), back.config().layers());
                float[][] again = m.logits(ids);
                for (int t = 0; t < ids.length; t++) {
                    assertArrayEquals(got[t], again[t], 0f, "reloaded logits, position " + t);
                }
                Checkpoint ck = back.checkpoint();
                assertEquals(tensorParams, ck.names().stream().mapToLong(n -> ck.shape(n).size()).sum());
            }
            JsonNode json = new ObjectMapper().readTree(out.resolve("config.json").toFile());
            assertEquals(!r.config().isUniform(), json.has("lopper_layers"));
            if (c.family().fusedProjections()) {
                assertFusedLayout(out, r.config(), json);
            }
        }
        return r;
    }

    /** A pruned Phi-3 is written in Phi-3's own layout: fused qkv_proj / gate_up_proj of the pruned shapes. */
    private static void assertFusedLayout(Path out, ModelConfig pruned, JsonNode json) {
        assertEquals("phi3", json.get("model_type").asText());
        assertEquals("Phi3ForCausalLM", json.get("architectures").get(0).asText());
        try (Checkpoint raw = Checkpoint.open(out)) {
            long h = pruned.hiddenSize();
            long d = pruned.headDim();
            for (int i = 0; i < pruned.numLayers(); i++) {
                var s = pruned.layer(i);
                assertEquals(new Shape((s.numHeads() + 2L * s.numKvHeads()) * d, h), raw.shape(WeightNames.qkv(i)), "layer " + i);
                assertEquals(new Shape(2L * s.intermediateSize(), h), raw.shape(WeightNames.gateUp(i)), "layer " + i);
            }
            assertTrue(raw.names().stream().noneMatch(n -> n.endsWith(".q_proj.weight") || n.endsWith(".k_proj.weight")
                    || n.endsWith(".v_proj.weight") || n.endsWith(".gate_proj.weight") || n.endsWith(".up_proj.weight")),
                    "no unfused tensors: " + raw.names());
        }
    }
}
