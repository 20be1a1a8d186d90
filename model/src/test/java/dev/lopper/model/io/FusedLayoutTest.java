package dev.lopper.model.io;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Phi-3's fused layout: split into logical tensors on load (zero-copy row slices), re-fused on save. */
class FusedLayoutTest {
    @TempDir
    Path tmp;

    private static final RandomModels.Spec PHI3 = RandomModels.llama().withFamily(Family.PHI3).withHeads(4, 2)
            .withDtype(DataType.BFLOAT16).withShards(2);

    @Test
    void fusedOnDiskLogicalInLopper() throws Exception {
        Path dir = tmp.resolve("phi3");
        ModelConfig c = RandomModels.write(dir, PHI3);
        long d = c.headDim();
        long h = c.hiddenSize();
        try (Checkpoint raw = Checkpoint.open(dir); ModelDir md = ModelDir.open(dir)) {
            assertEquals(new Shape((4 + 2 * 2) * d, h), raw.shape(WeightNames.qkv(0)));
            assertEquals(new Shape(2L * c.layer(0).intermediateSize(), h), raw.shape(WeightNames.gateUp(1)));
            assertFalse(raw.has(WeightNames.attn(0, "q_proj", "weight")));
            Checkpoint logical = md.checkpoint();
            assertFalse(logical.has(WeightNames.qkv(0)));
            assertEquals(new Shape(4 * d, h), logical.shape(WeightNames.attn(0, "q_proj", "weight")));
            assertEquals(new Shape(2 * d, h), logical.shape(WeightNames.attn(0, "v_proj", "weight")));
            // q, k, v rows in that order, and gate then up: byte ranges of the fused tensor, in the same file
            assertSlices(raw, logical, WeightNames.qkv(1), WeightNames.attn(1, "q_proj", "weight"),
                    WeightNames.attn(1, "k_proj", "weight"), WeightNames.attn(1, "v_proj", "weight"));
            assertSlices(raw, logical, WeightNames.gateUp(1), WeightNames.mlp(1, "gate_proj", "weight"),
                    WeightNames.mlp(1, "up_proj", "weight"));
            assertEquals(raw.dataBytes(), logical.dataBytes());
        }
    }

    private static void assertSlices(Checkpoint raw, Checkpoint logical, String fused, String... parts) {
        TensorInfo f = raw.info(fused);
        ByteBuffer all = raw.raw(fused);
        long begin = f.begin();
        for (String p : parts) {
            TensorInfo info = logical.info(p);
            assertEquals(f.file(), info.file(), p + " is mapped from the fused tensor's file");
            assertEquals(begin, info.begin(), p + " starts where the previous part ends");
            byte[] want = new byte[(int) info.byteLength()];
            all.get(want);
            byte[] got = new byte[want.length];
            logical.raw(p).get(got);
            assertArrayEquals(want, got, p);
            begin += info.byteLength();
        }
    }

    @Test
    void saveRefusesAndReloadsIdentically() throws Exception {
        Path dir = tmp.resolve("phi3");
        RandomModels.write(dir, PHI3);
        Path out = tmp.resolve("saved");
        long[] ids = {1, 5, 9, 200, 17, 3};
        try (ModelDir md = ModelDir.open(dir); LlamaModel m = md.loadModel(Device.cpu())) {
            float[][] want = m.logits(ids);
            ModelWriter.save(out, md.config(), md.checkpoint(), null, dir, ModelWriter.DEFAULT_MAX_SHARD_BYTES, Map.of("format", "pt"));
            try (Checkpoint a = Checkpoint.open(dir); Checkpoint b = Checkpoint.open(out)) {
                assertEquals(a.names(), b.names(), "the same fused tensor names, in the same order");
                for (String n : a.names()) {
                    assertEquals(a.raw(n), b.raw(n), n + " byte for byte");
                }
            }
            try (ModelDir back = ModelDir.open(out); LlamaModel m2 = back.loadModel(Device.cpu())) {
                float[][] got = m2.logits(ids);
                for (int t = 0; t < ids.length; t++) {
                    assertArrayEquals(want[t], got[t], 0f);
                }
            }
        }
        assertTrue(Files.readString(out.resolve("config.json")).contains("\"Phi3ForCausalLM\""));
    }

    @Test
    void fusedShapeAgainstConfigNamesTheTensor() throws Exception {
        Path dir = tmp.resolve("phi3");
        RandomModels.write(dir, PHI3);
        Path config = dir.resolve("config.json");
        Files.writeString(config, Files.readString(config).replace("\"num_key_value_heads\" : 2", "\"num_key_value_heads\" : 4"));
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelDir.open(dir));
        assertTrue(e.getMessage().contains("'" + WeightNames.qkv(0) + "' has shape") && e.getMessage().contains("config.json implies"),
                e.getMessage());
    }
}
