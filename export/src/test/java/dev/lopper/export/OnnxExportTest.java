package dev.lopper.export;

import ai.djl.ndarray.types.DataType;
import ai.onnx.proto.OnnxMl.ModelProto;
import ai.onnx.proto.OnnxMl.TensorProto;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * ONNX exports run in ONNX Runtime (Java) against Lopper's own forward pass: max abs diff <= 1e-4 (fp32); f16/bf16
 * exports against the fp32 export within {@link #halfTolerance}.
 */
class OnnxExportTest {
    static final double TOL = 1e-4;

    @TempDir
    Path tmp;

    private Path model(RandomModels.Spec spec, boolean pruned) throws Exception {
        return TestModels.variantDir(tmp, spec, pruned);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("dev.lopper.export.TestModels#variants")
    void logitsMatchForwardPass(String name, RandomModels.Spec spec, boolean pruned) throws Exception {
        Path dir = model(spec, pruned);
        checkLogits(dir, 24);
    }

    private void checkLogits(Path dir, int len) throws Exception {
        Exporter.Result r = Exporter.export(dir, ExportFormat.ONNX, tmp.resolve("onnx"));
        int vocab = ModelConfig.load(dir).vocabSize();
        long[][] ids = Reference.ids(2, len, vocab, 1);
        float[] want = Reference.logits(dir, ids, null);
        try (Ort ort = new Ort(r.dir().resolve(OnnxExporter.MODEL_FILE), 2)) {
            float[] got = ort.logits(ids, Ort.ones(2, len));
            double diff = Reference.maxAbsDiff(got, want);
            dev.lopper.model.testing.TestLog.printf("ONNX %s/%s: max abs diff %.3g%n", ModelConfig.load(dir).family(), dir.getFileName(), diff);
            assertTrue(diff <= TOL, dir.getFileName() + ": ONNX Runtime vs forward pass max abs diff " + diff);
            // the batch and sequence axes are symbolic: a different shape runs too
            long[][] shorter = Reference.ids(1, 5, vocab, 3);
            double diff2 = Reference.maxAbsDiff(ort.logits(shorter, Ort.ones(1, 5)), Reference.logits(dir, shorter, null));
            assertTrue(diff2 <= TOL, "batch 1, length 5: max abs diff " + diff2);
            assertEquals(-1, ort.inputShape("input_ids")[0]);
            assertEquals(-1, ort.inputShape("input_ids")[1]);
        }
    }

    @Test
    void fixtureDenseAndPruned() throws Exception {
        Path fixture = TestModels.fixture();
        assumeTrue(fixture != null, "fixtures/lopper-tiny is not in this checkout");
        checkLogits(fixture, 32);
        ModelConfig c = ModelConfig.load(fixture);
        Path pruned = TestModels.slice(fixture, TestModels.nonUniform(c, 0.5, true), tmp.resolve("fixture-pruned"));
        checkLogits(pruned, 32);
    }

    /**
     * Hidden-dimension pruning (issue 23): a third of the residual stream gone, on top of per-layer shapes with a
     * layer that lost its attention and one that lost its MLP (sublayer removal) and FLAP biases; hidden_size is
     * then not heads x head_dim. ONNX (and its KV-cache form) and TorchScript run it like Lopper's forward pass.
     */
    @Test
    void hiddenPrunedAndSublayerPrunedModels() throws Exception {
        Path dense = tmp.resolve("dense-h");
        RandomModels.write(dense, RandomModels.llama().withLayers(3).withHeads(8, 2));
        ModelConfig c = ModelConfig.load(dense);
        List<dev.lopper.model.config.LayerShape> shapes = List.of(
                new dev.lopper.model.config.LayerShape(0, 0, c.layer(0).intermediateSize(), false, false),
                new dev.lopper.model.config.LayerShape(8, 2, 0, true, false),
                new dev.lopper.model.config.LayerShape(4, 1, 30, false, true));
        Path sub = TestModels.slice(dense, shapes, tmp.resolve("sub"));
        Path dir = TestModels.sliceHidden(sub, TestModels.everyThirdRemoved(c.hiddenSize()), tmp.resolve("hidden"));
        assertEquals(c.hiddenSize() - c.hiddenSize() / 3, ModelConfig.load(dir).hiddenSize());
        for (Path m : List.of(sub, dir, TestModels.sliceHidden(dense, TestModels.everyThirdRemoved(c.hiddenSize()), tmp.resolve("hidden-only")))) {
            checkLogits(m, 12);
            Exporter.Result ts = Exporter.export(m, ExportFormat.TORCHSCRIPT, tmp.resolve("ts-" + m.getFileName()));
            long[][] ids = Reference.ids(2, 12, c.vocabSize(), 1);
            double diff = Reference.maxAbsDiff(TorchScriptExportTest.libtorchLogits(ts.dir(), ids), Reference.logits(m, ids, null));
            assertTrue(diff <= TOL, m.getFileName() + ": TorchScript max abs diff " + diff);
        }
        Exporter.Result kv = Exporter.export(dir, ExportFormat.ONNX_KV, tmp.resolve("kv-hidden"));
        long[][] ids = Reference.ids(1, 10, c.vocabSize(), 2);
        float[] want = Reference.logits(dir, ids, null);
        try (Ort ort = new Ort(kv.dir().resolve(OnnxExporter.MODEL_FILE), 1)) {
            double diff = Reference.maxAbsDiff(kvLogits(ort, ModelConfig.load(dir), ids, 7, 1, 1, 1), want);
            assertTrue(diff <= TOL, "hidden-pruned onnx-kv, prefill 7 then 3 steps: max abs diff " + diff);
        }
    }

    /** FLAP can remove a layer's whole attention or MLP: only the compensation bias remains. */
    @Test
    void layersWithNoHeadsOrNoChannels() throws Exception {
        Path dense = tmp.resolve("dense");
        RandomModels.write(dense, RandomModels.llama().withLayers(3));
        ModelConfig c = ModelConfig.load(dense);
        List<dev.lopper.model.config.LayerShape> shapes = List.of(
                new dev.lopper.model.config.LayerShape(0, 0, 50, true, false),
                new dev.lopper.model.config.LayerShape(4, 2, 0, false, true),
                new dev.lopper.model.config.LayerShape(2, 1, 30, true, true));
        Path dir = TestModels.slice(dense, shapes, tmp.resolve("empty-layers"));
        checkLogits(dir, 12);
        Exporter.Result kv = Exporter.export(dir, ExportFormat.ONNX_KV, tmp.resolve("kv"));
        try (Ort ort = new Ort(kv.dir().resolve(OnnxExporter.MODEL_FILE), 1)) {
            assertFalse(ort.inputNames().contains(OnnxExporter.pastName(0, "key")), "a layer with no KV heads has no cache");
            assertTrue(ort.inputNames().contains(OnnxExporter.pastName(1, "key")));
        }
        Exporter.Result ts = Exporter.export(dir, ExportFormat.TORCHSCRIPT, tmp.resolve("ts"));
        long[][] ids = Reference.ids(2, 12, c.vocabSize(), 1);
        double diff = Reference.maxAbsDiff(TorchScriptExportTest.libtorchLogits(ts.dir(), ids), Reference.logits(dir, ids, null));
        assertTrue(diff <= TOL, "TorchScript with empty layers: max abs diff " + diff);
    }

    @Test
    void paddingMaskMatchesForwardPass() throws Exception {
        Path dir = model(RandomModels.llama(), false);
        long[][] ids = Reference.ids(2, 12, 300, 2);
        long[][] mask = Ort.ones(2, 12);
        for (int t = 0; t < 4; t++) {
            mask[1][t] = 0; // left padding in the second row
        }
        Exporter.Result r = Exporter.export(dir, ExportFormat.ONNX, tmp.resolve("onnx"));
        try (Ort ort = new Ort(r.dir().resolve(OnnxExporter.MODEL_FILE), 2)) {
            double diff = Reference.maxAbsDiff(ort.logits(ids, mask), Reference.logits(dir, ids, mask));
            assertTrue(diff <= TOL, "padded batch: max abs diff " + diff);
        }
    }

    @Test
    void externalDataLoadsAndMatches() throws Exception {
        Path dir = model(RandomModels.llama().withLayers(3).withHeads(8, 4), true);
        Path out = tmp.resolve("ext");
        Files.createDirectories(out);
        try (ModelDir md = ModelDir.open(dir)) {
            List<Path> files = OnnxExporter.write(md.config(), md.checkpoint(), out, false, true);
            assertEquals(2, files.size());
        }
        long modelBytes = Files.size(out.resolve(OnnxExporter.MODEL_FILE));
        long dataBytes = Files.size(out.resolve(OnnxExporter.DATA_FILE));
        assertTrue(modelBytes < 64 * 1024, "weights must be outside model.onnx, which has " + modelBytes + " bytes");
        assertTrue(dataBytes > 100_000, "model.onnx.data has only " + dataBytes + " bytes");
        long[][] ids = Reference.ids(2, 10, 300, 4);
        try (Ort ort = new Ort(out.resolve(OnnxExporter.MODEL_FILE), 2)) {
            double diff = Reference.maxAbsDiff(ort.logits(ids, Ort.ones(2, 10)), Reference.logits(dir, ids, null));
            assertTrue(diff <= TOL, "external data: max abs diff " + diff);
        }
    }

    /** KV cache: prefill n tokens with an empty cache, then decode one token at a time; equals full-sequence logits. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("dev.lopper.export.TestModels#variants")
    void kvCachePrefillThenStepsMatchFullSequence(String name, RandomModels.Spec spec, boolean pruned) throws Exception {
        Path dir = model(spec, pruned);
        ModelConfig c = ModelConfig.load(dir);
        int len = 20;
        int prefill = 17;
        long[][] ids = Reference.ids(2, len, c.vocabSize(), 5);
        float[] want = Reference.logits(dir, ids, null);
        Exporter.Result r = Exporter.export(dir, ExportFormat.ONNX_KV, tmp.resolve("onnx-kv"));
        int d = c.headDim();
        try (Ort ort = new Ort(r.dir().resolve(OnnxExporter.MODEL_FILE), 2)) {
            for (int i : OnnxExporter.cachedLayers(c)) {
                // documented input shape: [batch, kv_heads_i, past_sequence, head_dim], symbolic batch and past
                assertArrayEquals(new long[] {-1, c.layer(i).numKvHeads(), -1, d}, ort.inputShape(OnnxExporter.pastName(i, "value")));
            }
            float[] got = kvLogits(ort, c, ids, prefill, 1, 1, 1);
            double diff = Reference.maxAbsDiff(got, want);
            assertTrue(diff <= TOL, name + ": prefill " + prefill + " then 3 steps with cache: max abs diff " + diff);
        }
    }

    /**
     * Runs an {@code onnx-kv} model over {@code ids} in chunks of {@code steps} tokens (an empty cache first, then
     * each call's {@code present.*} fed back as {@code past_key_values.*}); returns the logits [batch, len, vocab].
     */
    static float[] kvLogits(Ort ort, ModelConfig c, long[][] ids, int... steps) throws Exception {
        int batch = ids.length;
        int len = ids[0].length;
        int v = c.vocabSize();
        int d = c.headDim();
        Map<String, float[]> cache = new HashMap<>();
        Map<String, long[]> shapes = new HashMap<>();
        for (int i : OnnxExporter.cachedLayers(c)) {
            for (String kind : List.of("key", "value")) {
                cache.put(OnnxExporter.pastName(i, kind), new float[0]);
                shapes.put(OnnxExporter.pastName(i, kind), new long[] {batch, c.layer(i).numKvHeads(), 0, d});
            }
        }
        float[] all = new float[batch * len * v];
        int done = 0;
        for (int step : steps) {
            long[][] chunk = new long[batch][step];
            for (int b = 0; b < batch; b++) {
                System.arraycopy(ids[b], done, chunk[b], 0, step);
            }
            Map<String, float[]> out = ort.run(chunk, Ort.ones(batch, done + step), cache, shapes);
            for (int b = 0; b < batch; b++) {
                System.arraycopy(out.get("logits"), b * step * v, all, (b * len + done) * v, step * v);
            }
            done += step;
            for (int i : OnnxExporter.cachedLayers(c)) {
                for (String kind : List.of("key", "value")) {
                    float[] present = out.get(OnnxExporter.presentName(i, kind));
                    assertEquals((long) batch * c.layer(i).numKvHeads() * done * d, present.length);
                    cache.put(OnnxExporter.pastName(i, kind), present);
                    shapes.put(OnnxExporter.pastName(i, kind), new long[] {batch, c.layer(i).numKvHeads(), done, d});
                }
            }
        }
        return all;
    }

    /** f16/bf16 on a random pruned model (non-uniform layers, FLAP biases). */
    @ParameterizedTest
    @EnumSource(value = ExportDtype.class, names = {"F16", "BF16"})
    void halfPrecisionRandomModel(ExportDtype dtype) throws Exception {
        checkHalf(model(RandomModels.llama(), true), dtype, 24);
    }

    /** A tied LM head reads the embedding through its Cast (Transpose of the cast output). */
    @Test
    void halfPrecisionTiedHead() throws Exception {
        checkHalf(model(RandomModels.llama().withHeads(4, 4).withTied(true), false), ExportDtype.F16, 16);
    }

    /** f16/bf16 on fixtures/lopper-tiny. */
    @ParameterizedTest
    @EnumSource(value = ExportDtype.class, names = {"F16", "BF16"})
    void halfPrecisionFixture(ExportDtype dtype) throws Exception {
        Path fixture = TestModels.fixture();
        assumeTrue(fixture != null, "fixtures/lopper-tiny is not in this checkout");
        checkHalf(fixture, dtype, 32);
    }

    /**
     * Max abs logit difference accepted between a half-precision export and the fp32 export (both in ONNX
     * Runtime), relative to the largest |logit| of the fp32 export: f16 keeps 11 significant bits, bf16 8. Measured
     * values are in docs/EXPORT.md.
     */
    static double halfTolerance(ExportDtype dtype) {
        return dtype == ExportDtype.F16 ? 2e-3 : 2e-2;
    }

    private void checkHalf(Path dir, ExportDtype dtype, int len) throws Exception {
        ModelConfig c = ModelConfig.load(dir);
        Path f32 = Exporter.export(dir, ExportFormat.ONNX, tmp.resolve("f32")).dir().resolve(OnnxExporter.MODEL_FILE);
        Path half;
        Path halfKv;
        try (ModelDir md = ModelDir.open(dir)) {
            half = Exporter.export(c, md.checkpoint(), dir, ExportFormat.ONNX, tmp.resolve(dtype.cliName()), false, dtype)
                    .dir().resolve(OnnxExporter.MODEL_FILE);
            halfKv = Exporter.export(c, md.checkpoint(), dir, ExportFormat.ONNX_KV, tmp.resolve(dtype.cliName() + "-kv"), false, dtype)
                    .dir().resolve(OnnxExporter.MODEL_FILE);
        }
        // matrices stored in half precision, norms in fp32, each half initializer read through a Cast
        ModelProto m = ModelProto.parseFrom(Files.readAllBytes(half));
        int want = dtype == ExportDtype.F16 ? TensorProto.DataType.FLOAT16_VALUE : TensorProto.DataType.BFLOAT16_VALUE;
        Map<String, Integer> types = new HashMap<>();
        m.getGraph().getInitializerList().forEach(t -> types.put(t.getName(), t.getDataType()));
        assertEquals(want, types.get("model.embed_tokens.weight"));
        assertEquals(want, types.get("model.layers.0.mlp.down_proj.weight"));
        assertEquals(TensorProto.DataType.FLOAT_VALUE, types.get("model.norm.weight"));
        long halves = types.values().stream().filter(t -> t == want).count();
        long casts = m.getGraph().getNodeList().stream().filter(n -> n.getOpType().equals("Cast")
                && types.getOrDefault(n.getInput(0), -1) == want).count();
        assertEquals(halves, casts, "one Cast per half-precision initializer");
        double ratio = (double) Files.size(half) / Files.size(f32);
        long[][] ids = Reference.ids(2, len, c.vocabSize(), 7);
        try (Ort a = new Ort(f32, 2); Ort b = new Ort(half, 2); Ort kv = new Ort(halfKv, 2)) {
            float[] ref = a.logits(ids, Ort.ones(2, len));
            float[] got = b.logits(ids, Ort.ones(2, len));
            double scale = 0;
            for (float x : ref) {
                scale = Math.max(scale, Math.abs(x));
            }
            double diff = Reference.maxAbsDiff(got, ref);
            // the KV variant computes the same fp32 graph after the Casts: equal to the half logits variant
            double kvDiff = Reference.maxAbsDiff(kvLogits(kv, c, ids, len - 3, 1, 1, 1), got);
            dev.lopper.model.testing.TestLog.printf("ONNX %s %s: %d / %d bytes (%.3f), logits max abs diff vs f32 %.3g (max |logit| %.3g, relative %.3g); kv vs logits %.3g%n",
                    dtype, dir.getFileName(), Files.size(half), Files.size(f32), ratio, diff, scale, diff / scale, kvDiff);
            assertTrue(ratio < 0.55, dtype + ": file is " + ratio + " of the fp32 export's size");
            assertTrue(diff <= halfTolerance(dtype) * scale, dtype + ": max abs diff vs f32 " + diff + " (max |logit| " + scale + ")");
            assertTrue(kvDiff <= TOL, dtype + " onnx-kv vs onnx: max abs diff " + kvDiff);
        }
    }
}
