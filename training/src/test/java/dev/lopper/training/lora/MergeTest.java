package dev.lopper.training.lora;

import dev.lopper.training.TestModels;
import dev.lopper.training.loop.CausalLm;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ProjectionHook;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Merged weights give base + adapter's logits; PEFT files round-trip. */
public class MergeTest {
    @TempDir
    Path tmp;

    private static final List<LayerShape> PRUNED = List.of(
            new LayerShape(2, 1, 40, true, true),     // heads and channels cut, FLAP biases on both
            new LayerShape(0, 0, 96, true, false),    // every head pruned: only o_proj's bias is left
            new LayerShape(4, 2, 0, false, true));    // every channel pruned: only down_proj's bias is left

    @Test
    void mergedEqualsBasePlusAdapterOnGqa() throws Exception {
        Path m = tmp.resolve("gqa");
        RandomModels.write(m, RandomModels.llama());
        check(m, "gqa");
    }

    @Test
    void mergedEqualsBasePlusAdapterOnPrunedNonUniformWithFlapBiases() throws Exception {
        check(TestModels.pruned(tmp.resolve("pruned"), RandomModels.llama(), PRUNED), "pruned");
    }

    @Test
    void mergedEqualsBasePlusAdapterOnQwen2Biases() throws Exception {
        Path m = tmp.resolve("qwen2");
        RandomModels.write(m, RandomModels.llama().withFamily(Family.QWEN2));
        check(m, "qwen2");
    }

    @Test
    void mergedEqualsBasePlusAdapterOnPrunedPhi3Fused() throws Exception {
        RandomModels.Spec phi = RandomModels.llama().withFamily(Family.PHI3);
        Path m = TestModels.pruned(tmp.resolve("phi3"), phi, List.of(new LayerShape(2, 1, 40, true, false),
                new LayerShape(4, 2, 96), new LayerShape(0, 0, 64, true, false)));
        double diff = check(m, "phi3");
        try (ModelDir d = ModelDir.open(m); LoraAdapters lora = LoraAdapters.create(d.config(), LoraConfig.defaults(), 1, Device.cpu())) {
            // one adapter on the fused qkv_proj / gate_up_proj, as PEFT on the HF model
            assertTrue(lora.tensors().containsKey("base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight"));
            assertEquals(new Shape(2 * 16 + 2 * 16, 8), lora.tensors().get("base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight").getShape());
            assertTrue(lora.tensors().containsKey("base_model.model.model.layers.1.mlp.gate_up_proj.lora_B.weight"));
        }
        assertTrue(diff <= 1e-4);
    }

    /** Returns the max abs diff between merged logits and base + adapter logits. */
    private double check(Path model, String name) throws Exception {
        long[] ids = {5, 17, 3, 99, 42, 7, 250, 1, 64, 8, 13, 200};
        Path merged = tmp.resolve(name + "-merged");
        Path adapter = tmp.resolve(name + "-adapter");
        float[] withAdapter;
        float[] base;
        try (ModelDir d = ModelDir.open(model); LlamaModel lm = d.loadModel(Device.cpu());
             LoraAdapters lora = LoraAdapters.create(d.config(), LoraConfig.defaults(), 11, Device.cpu());
             NDManager m = NDManager.newBaseManager(Device.cpu())) {
            TestModels.randomizeB(lora, 3);
            NDArray x = m.create(ids, new Shape(1, ids.length));
            try (NDManager scope = m.newSubManager()) {
                withAdapter = CausalLm.logits(lm, scope, x, new LoraHook(lora, scope, false, false)).toFloatArray();
                base = CausalLm.logits(lm, scope, x, ProjectionHook.NONE).toFloatArray();
            }
            Merge.save(d, lora, merged, DataType.FLOAT32);
            PeftIo.save(lora, adapter, model.toString());
            try (LoraAdapters back = PeftIo.load(adapter, d.config(), Device.cpu())) {
                Map<String, NDArray> a = lora.tensors();
                Map<String, NDArray> b = back.tensors();
                assertEquals(a.keySet(), b.keySet());
                a.forEach((k, v) -> assertArrayEquals(v.toFloatArray(), b.get(k).toFloatArray(), k));
                assertEquals(lora.config().orderedTargets(), back.config().orderedTargets());
            }
        }
        float[] mergedLogits;
        try (ModelDir d = ModelDir.open(merged); LlamaModel lm = d.loadModel(Device.cpu());
             NDManager m = NDManager.newBaseManager(Device.cpu())) {
            mergedLogits = lm.logits(m.create(ids, new Shape(1, ids.length))).toFloatArray();
        }
        double diff = 0;
        double moved = 0;
        for (int i = 0; i < base.length; i++) {
            diff = Math.max(diff, Math.abs(mergedLogits[i] - withAdapter[i]));
            moved = Math.max(moved, Math.abs(base[i] - withAdapter[i]));
        }
        assertTrue(moved > 1e-2, "the adapter must change the logits, or the check could not fail: " + moved);
        assertTrue(diff <= 1e-4, name + ": merged logits differ from base + adapter by " + diff);
        return diff;
    }
}
