package dev.lopper.export;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import dev.lopper.export.gguf.GgmlType;
import dev.lopper.export.gguf.GgufReader;
import dev.lopper.export.gguf.Half;
import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** GGUF export written, then read back by {@link GgufReader}: keys, tokenizer, tensors, q/k permutation, Q8_0. */
class GgufExportTest {
    @TempDir
    Path tmp;

    @Test
    void uniformFixtureIsLlamaWithPermutedQk() throws Exception {
        Path fixture = TestModels.fixture();
        assumeTrue(fixture != null, "fixtures/lopper-tiny is not in this checkout");
        Exporter.Result r = Exporter.export(fixture, ExportFormat.GGUF, tmp.resolve("gguf"));
        ModelConfig c = ModelConfig.load(fixture);
        try (GgufReader g = GgufReader.open(r.dir().resolve(GgufExporter.FILE)); ModelDir md = ModelDir.open(fixture)) {
            assertEquals(3, g.version());
            assertEquals("llama", g.string("general.architecture"));
            assertEquals(8, g.get("llama.block_count").asLong());
            assertEquals(8, g.get("llama.attention.head_count").asLong());
            assertEquals(4, g.get("llama.attention.head_count_kv").asLong());
            assertEquals(688, g.get("llama.feed_forward_length").asLong());
            assertEquals(32, g.get("llama.attention.key_length").asLong());
            assertEquals(32, g.get("llama.attention.value_length").asLong());
            assertEquals(32, g.get("llama.rope.dimension_count").asLong());
            assertEquals(10000f, (Float) g.get("llama.rope.freq_base").value());
            assertEquals(1e-5f, (Float) g.get("llama.attention.layer_norm_rms_epsilon").value());
            assertEquals(512, g.get("llama.context_length").asLong());
            assertEquals("gpt2", g.string("tokenizer.ggml.model"));
            assertEquals("gpt-2", g.string("tokenizer.ggml.pre"));
            String[] tokens = g.get("tokenizer.ggml.tokens").asStrings();
            assertEquals(4096, tokens.length);
            assertEquals("<s>", tokens[1]);
            int[] types = g.get("tokenizer.ggml.token_type").asInts();
            assertArrayEquals(new int[] {3, 3, 3, 1}, new int[] {types[0], types[1], types[2], types[3]});
            assertEquals(3837, g.get("tokenizer.ggml.merges").asStrings().length);
            assertEquals("t h", g.get("tokenizer.ggml.merges").asStrings()[0]);
            assertEquals(1, g.get("tokenizer.ggml.bos_token_id").asLong());
            assertEquals(2, g.get("tokenizer.ggml.eos_token_id").asLong());
            assertEquals(true, g.get("tokenizer.ggml.add_bos_token").value());
            assertEquals(2 + 1 + 9 * 8, g.tensors().size());
            assertArrayEquals(new long[] {256, 4096}, g.tensors().get("token_embd.weight").dims());
            assertArrayEquals(hf(md, WeightNames.EMBED), g.values("token_embd.weight"));
            assertArrayEquals(hf(md, WeightNames.LM_HEAD), g.values("output.weight"));
            assertArrayEquals(hf(md, WeightNames.mlp(3, "down_proj", "weight")), g.values("blk.3.ffn_down.weight"));
            assertArrayEquals(new long[] {256, 256}, g.tensors().get("blk.0.attn_q.weight").dims());
            assertArrayEquals(new long[] {256, 128}, g.tensors().get("blk.0.attn_k.weight").dims());
            assertArrayEquals(reference(hf(md, WeightNames.attn(5, "q_proj", "weight")), 8, 32, 256), g.values("blk.5.attn_q.weight"));
            assertArrayEquals(reference(hf(md, WeightNames.attn(5, "k_proj", "weight")), 4, 32, 256), g.values("blk.5.attn_k.weight"));
            assertArrayEquals(hf(md, WeightNames.attn(5, "v_proj", "weight")), g.values("blk.5.attn_v.weight"));
            assertEquals(c.numLayers(), g.tensors().keySet().stream().filter(n -> n.endsWith("attn_q.weight")).count());
        }
    }

    @Test
    void nonUniformPrunedIsDeciWithPerLayerArraysAndBiases() throws Exception {
        Path fixture = TestModels.fixture();
        assumeTrue(fixture != null, "fixtures/lopper-tiny is not in this checkout");
        List<LayerShape> shapes = new java.util.ArrayList<>(TestModels.nonUniform(ModelConfig.load(fixture), 0.5, true));
        shapes.set(1, new LayerShape(0, 0, shapes.get(1).intermediateSize(), true, shapes.get(1).downProjBias()));
        shapes.set(2, new LayerShape(shapes.get(2).numHeads(), shapes.get(2).numKvHeads(), 0, shapes.get(2).oProjBias(), true));
        Path pruned = TestModels.slice(fixture, shapes, tmp.resolve("pruned"));
        Exporter.Result r = Exporter.export(ModelConfig.load(pruned), ModelDir.open(pruned).checkpoint(), pruned, ExportFormat.GGUF,
                tmp.resolve("gguf"), false, ExportDtype.F32);
        try (GgufReader g = GgufReader.open(r.dir().resolve(GgufExporter.FILE)); ModelDir md = ModelDir.open(pruned)) {
            assertEquals("deci", g.string("general.architecture"));
            int[] heads = g.get("deci.attention.head_count").asInts();
            int[] kv = g.get("deci.attention.head_count_kv").asInts();
            int[] ffn = g.get("deci.feed_forward_length").asInts();
            for (int i = 0; i < shapes.size(); i++) {
                LayerShape s = shapes.get(i);
                boolean zeroHead = s.numHeads() == 0 && s.oProjBias();
                assertEquals(zeroHead ? 1 : s.numHeads(), heads[i], "heads of layer " + i);
                assertEquals(zeroHead ? 1 : s.numKvHeads(), kv[i], "kv heads of layer " + i);
                assertEquals(Math.max(1, s.intermediateSize()), ffn[i], "ffn of layer " + i);
                assertEquals(s.oProjBias(), g.tensors().containsKey("blk." + i + ".attn_output.bias"));
                assertEquals(s.downProjBias(), g.tensors().containsKey("blk." + i + ".ffn_down.bias"));
                if (s.numHeads() > 0) {
                    assertArrayEquals(reference(hf(md, WeightNames.attn(i, "q_proj", "weight")), s.numHeads(), 32, 256),
                            g.values("blk." + i + ".attn_q.weight"), "q of layer " + i);
                    assertArrayEquals(reference(hf(md, WeightNames.attn(i, "k_proj", "weight")), s.numKvHeads(), 32, 256),
                            g.values("blk." + i + ".attn_k.weight"), "k of layer " + i);
                }
            }
            assertArrayEquals(hf(md, WeightNames.attn(0, "o_proj", "bias")), g.values("blk.0.attn_output.bias"));
            assertArrayEquals(new float[32 * 256], g.values("blk.1.attn_q.weight"), "emptied attention: one zero head");
            assertArrayEquals(new float[256], g.values("blk.2.ffn_up.weight"), "emptied MLP: one zero channel");
        }
    }

    /** Hidden-dimension pruning with a sublayer gone: embedding_length is the kept stream, every hidden axis sliced. */
    @Test
    void hiddenPrunedIsDeciWithTheKeptStream() throws Exception {
        Path fixture = TestModels.fixture();
        assumeTrue(fixture != null, "fixtures/lopper-tiny is not in this checkout");
        ModelConfig c = ModelConfig.load(fixture);
        List<LayerShape> shapes = new java.util.ArrayList<>(c.layers());
        shapes.set(3, new LayerShape(0, 0, c.layer(3).intermediateSize()));
        int[] kept = TestModels.everyThirdRemoved(c.hiddenSize());
        Path pruned = TestModels.sliceHidden(TestModels.slice(fixture, shapes, tmp.resolve("sub")), kept, tmp.resolve("hidden"));
        Exporter.Result r = Exporter.export(ModelConfig.load(pruned), ModelDir.open(pruned).checkpoint(), pruned, ExportFormat.GGUF,
                tmp.resolve("gguf"), false, ExportDtype.F32);
        try (GgufReader g = GgufReader.open(r.dir().resolve(GgufExporter.FILE)); ModelDir md = ModelDir.open(pruned)) {
            assertEquals("deci", g.string("general.architecture"));
            assertEquals(kept.length, g.get("deci.embedding_length").asLong());
            assertEquals(32, g.get("deci.attention.key_length").asLong());
            assertEquals(0, g.get("deci.attention.head_count").asInts()[3], "layer 3 has no attention");
            assertArrayEquals(hf(md, WeightNames.EMBED), g.values("token_embd.weight"));
            assertArrayEquals(hf(md, WeightNames.FINAL_NORM), g.values("output_norm.weight"));
            assertArrayEquals(reference(hf(md, WeightNames.attn(0, "q_proj", "weight")), 8, 32, kept.length),
                    g.values("blk.0.attn_q.weight"), "q of layer 0 over the kept stream");
        }
    }

    @Test
    void halfAndQ8Types() throws Exception {
        Path fixture = TestModels.fixture();
        assumeTrue(fixture != null, "fixtures/lopper-tiny is not in this checkout");
        for (ExportDtype d : new ExportDtype[] {ExportDtype.F16, ExportDtype.BF16, ExportDtype.Q8_0}) {
            Exporter.Result r = Exporter.export(ModelConfig.load(fixture), ModelDir.open(fixture).checkpoint(), fixture,
                    ExportFormat.GGUF, tmp.resolve(d.cliName()), false, d);
            try (GgufReader g = GgufReader.open(r.dir().resolve(GgufExporter.FILE)); ModelDir md = ModelDir.open(fixture)) {
                GgmlType want = switch (d) {
                    case F16 -> GgmlType.F16;
                    case BF16 -> GgmlType.BF16;
                    default -> GgmlType.Q8_0;
                };
                assertEquals(want, g.tensors().get("blk.0.ffn_gate.weight").type());
                assertEquals(GgmlType.F32, g.tensors().get("blk.0.attn_norm.weight").type());
                float[] src = hf(md, WeightNames.mlp(0, "gate_proj", "weight"));
                float[] back = g.values("blk.0.ffn_gate.weight");
                if (d == ExportDtype.BF16) {
                    assertArrayEquals(src, back, "the fixture is BF16: bf16 is exact");
                } else {
                    for (int i = 0; i < src.length; i++) {
                        assertTrue(Math.abs(src[i] - back[i]) <= Math.abs(src[i]) * 1e-3 + 0.02, d + " element " + i);
                    }
                }
            }
        }
    }

    @Test
    void q8RoundTripWithinHalfAStep() {
        SplittableRandom rnd = new SplittableRandom(3);
        float[] x = new float[32 * 64];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (rnd.nextGaussian() * (i / 32 % 7 + 1) * 0.05);
        }
        x[5] = 0;
        ByteBuffer b = ByteBuffer.allocate((int) GgmlType.Q8_0.bytes(x.length)).order(ByteOrder.LITTLE_ENDIAN);
        GgmlType.Q8_0.encode(x, b);
        assertEquals(34 * 64, b.position());
        float[] y = GgmlType.Q8_0.decode(b.flip(), x.length);
        for (int blk = 0; blk < 64; blk++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) {
                amax = Math.max(amax, Math.abs(x[blk * 32 + j]));
            }
            float d = amax / 127;
            // half a quantization step, plus the fp16 rounding of the scale times |q| <= 127
            double bound = d / 2 + 127 * d * Math.pow(2, -11) + 1e-7;
            for (int j = 0; j < 32; j++) {
                assertTrue(Math.abs(x[blk * 32 + j] - y[blk * 32 + j]) <= bound, "block " + blk + " element " + j);
            }
        }
        float[] zeros = GgmlType.Q8_0.decode(encode(new float[32]).flip(), 32);
        assertArrayEquals(new float[32], zeros, "an all-zero block has scale 0 and decodes to zeros");
    }

    @Test
    void halfConversionRoundsToNearestEven() {
        for (int h = 0; h < 0x10000; h++) {
            boolean nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
            if (!nan) {
                assertEquals((short) h, Half.toHalf(Half.fromHalf((short) h)), "half " + Integer.toHexString(h));
            }
        }
        assertEquals((short) 0x3c00, Half.toHalf(1f));
        assertEquals((short) 0x3c00, Half.toHalf(1f + 0x1p-11f), "a tie rounds to even");
        assertEquals((short) 0x3c02, Half.toHalf(1f + 3 * 0x1p-11f), "a tie rounds to even (up)");
        assertEquals((short) 0x7c00, Half.toHalf(65520f), "past the largest half: infinity");
        assertEquals((short) 0x7bff, Half.toHalf(65519f));
        assertEquals((short) 0x0001, Half.toHalf(0x1p-24f), "smallest subnormal");
        assertEquals((short) 0x0000, Half.toHalf(0x1p-25f), "a tie with zero rounds to even (zero)");
        assertEquals((short) 0x3f80, Half.toBFloat16(1f));
        assertEquals((short) 0x3f80, Half.toBFloat16(Float.intBitsToFloat(0x3f808000)), "bf16 tie to even");
        assertEquals((short) 0x3f82, Half.toBFloat16(Float.intBitsToFloat(0x3f818000)));
    }

    @Test
    void dtypeRefusedWhereAFormatCannotStoreIt() throws Exception {
        Path fixture = TestModels.fixture();
        assumeTrue(fixture != null, "fixtures/lopper-tiny is not in this checkout");
        try (ModelDir md = ModelDir.open(fixture)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Exporter.export(md.config(),
                    md.checkpoint(), fixture, ExportFormat.TORCHSCRIPT, tmp.resolve("ts"), false, ExportDtype.F16));
            assertTrue(e.getMessage().contains("--dtype f16 is not available for --format torchscript"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> Exporter.export(md.config(), md.checkpoint(), fixture,
                    ExportFormat.ONNX, tmp.resolve("onnx"), false, ExportDtype.Q8_0));
            assertThrows(IllegalArgumentException.class, () -> ExportDtype.parse("int4"));
        }
        assertFalse(tmp.resolve("ts").toFile().exists());
    }

    private static ByteBuffer encode(float[] x) {
        ByteBuffer b = ByteBuffer.allocate((int) GgmlType.Q8_0.bytes(x.length)).order(ByteOrder.LITTLE_ENDIAN);
        GgmlType.Q8_0.encode(x, b);
        return b;
    }

    /** An HF tensor as fp32, row-major. */
    private static float[] hf(ModelDir md, String name) {
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            return md.checkpoint().load(name, m).toFloatArray();
        }
    }

    /**
     * convert_hf_to_gguf.py's permute written as its numpy ops, with plain loops: reshape [heads, 2, d/2, cols],
     * swap axes 1 and 2 -> [heads, d/2, 2, cols], reshape back.
     */
    private static float[] reference(float[] w, int heads, int d, int cols) {
        float[][][][] a = new float[heads][2][d / 2][cols];
        int k = 0;
        for (int h = 0; h < heads; h++) {
            for (int s = 0; s < 2; s++) {
                for (int i = 0; i < d / 2; i++) {
                    for (int c = 0; c < cols; c++) {
                        a[h][s][i][c] = w[k++];
                    }
                }
            }
        }
        float[] out = new float[w.length];
        k = 0;
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < d / 2; i++) {
                for (int s = 0; s < 2; s++) {
                    for (int c = 0; c < cols; c++) {
                        out[k++] = a[h][s][i][c]; // swapped: element [h][i][s] of the new array
                    }
                }
            }
        }
        return out;
    }
}
