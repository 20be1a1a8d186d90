package dev.lopper.cli;

import ai.djl.Device;
import ai.djl.Model;
import ai.djl.inference.Predictor;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.Shape;
import ai.djl.translate.NoopTranslator;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtSession;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.export.ExportFormat;
import dev.lopper.export.Exporter;
import dev.lopper.export.OnnxExporter;
import dev.lopper.export.TorchScriptExporter;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Qwen3 (q/k norms, head_dim != hidden / heads) and Phi-3 (fused projections) pruned end to end with every
 * criterion by {@code lopper prune}; the result reloads in its family's own layout and its ONNX (ONNX Runtime) and
 * TorchScript (libtorch) exports give Lopper's logits.
 */
class FamilyPruneTest {
    private static final double TOL = 1e-4;

    @TempDir
    Path tmp;

    @ParameterizedTest
    @CsvSource({"QWEN3,magnitude", "QWEN3,wanda-sp", "QWEN3,flap", "QWEN3,cfsp",
            "PHI3,magnitude", "PHI3,wanda-sp", "PHI3,flap", "PHI3,cfsp"})
    void prunesReloadsAndExports(Family family, String method) throws Exception {
        RandomModels.Spec spec = RandomModels.llama().withFamily(family).withHeads(8, 4).withLayers(3);
        if (family == Family.QWEN3) {
            spec = spec.withSize(64, 24, 96);
        }
        Path dir = tmp.resolve("model");
        RandomModels.write(dir, spec);
        Path calib = Files.writeString(tmp.resolve("calib.txt"),
                "In the beginning God created the heaven and the earth. And the earth was without form, and void.\n".repeat(30));
        Path out = tmp.resolve("pruned");
        StringWriter stdout = new StringWriter();
        StringWriter stderr = new StringWriter();
        CommandLine cl = new CommandLine(new PruneCommand());
        cl.setOut(new PrintWriter(stdout));
        cl.setErr(new PrintWriter(stderr));
        int code = method.equals("magnitude")
                ? cl.execute(dir.toString(), "--method", method, "--ratio", "0.3", "--out", out.toString(), "--json")
                : cl.execute(dir.toString(), "--method", method, "--ratio", "0.3", "--calib", calib.toString(), "--samples", "8",
                "--seq-len", "32", "--out", out.toString(), "--json");
        assertEquals(0, code, stderr.toString());
        double achieved = new ObjectMapper().readTree(stdout.toString()).get("achieved_ratio").asDouble();
        assertTrue(achieved > 0.1 && achieved < 0.5, family + "/" + method + " achieved " + achieved);

        JsonNode json = new ObjectMapper().readTree(out.resolve("config.json").toFile());
        assertEquals(family.modelType(), json.get("model_type").asText());
        ModelConfig pruned = ModelConfig.load(out);
        assertTrue(pruned.layers().stream().anyMatch(l -> !l.equals(ModelConfig.load(dir).layer(0))), "something was pruned");
        if (family == Family.PHI3) {
            assertFused(out, pruned);
        }

        long[][] ids = {{1, 50, 90, 200, 7, 33, 120, 250}, {5, 6, 7, 8, 9, 10, 11, 12}};
        float[] want = lopperLogits(out, ids);
        for (float f : want) {
            assertTrue(Float.isFinite(f));
        }
        double onnx = maxAbsDiff(onnxLogits(Exporter.export(out, ExportFormat.ONNX, tmp.resolve("onnx")).dir(), ids), want);
        double ts = maxAbsDiff(torchScriptLogits(Exporter.export(out, ExportFormat.TORCHSCRIPT, tmp.resolve("ts")).dir(), ids), want);
        dev.lopper.model.testing.TestLog.printf("FamilyPruneTest %s/%s: ratio %.3f, ONNX max abs diff %.3g, TorchScript %.3g%n", family, method, achieved, onnx, ts);
        assertTrue(onnx <= TOL, "ONNX Runtime vs forward pass: " + onnx);
        assertTrue(ts <= TOL, "libtorch vs forward pass: " + ts);
    }

    /** Phi-3 written back in its own layout: fused tensors of each layer's pruned shape, no unfused ones. */
    private static void assertFused(Path out, ModelConfig c) {
        try (Checkpoint raw = Checkpoint.open(out)) {
            for (int i = 0; i < c.numLayers(); i++) {
                LayerShape s = c.layer(i);
                assertEquals(new Shape((s.numHeads() + 2L * s.numKvHeads()) * c.headDim(), c.hiddenSize()), raw.shape(WeightNames.qkv(i)));
                assertEquals(new Shape(2L * s.intermediateSize(), c.hiddenSize()), raw.shape(WeightNames.gateUp(i)));
                assertFalse(raw.has(WeightNames.attn(i, "q_proj", "weight")) || raw.has(WeightNames.mlp(i, "up_proj", "weight")));
            }
        }
    }

    private static float[] lopperLogits(Path dir, long[][] ids) {
        try (ModelDir md = ModelDir.open(dir); LlamaModel m = md.loadModel(Device.cpu());
             var nd = ai.djl.ndarray.NDManager.newBaseManager(Device.cpu())) {
            return m.logits(nd.create(flat(ids), new Shape(ids.length, ids[0].length))).toFloatArray();
        }
    }

    private static float[] onnxLogits(Path exportDir, long[][] ids) throws Exception {
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        long[][] mask = new long[ids.length][ids[0].length];
        for (long[] row : mask) {
            java.util.Arrays.fill(row, 1);
        }
        try (OrtSession session = env.createSession(exportDir.resolve(OnnxExporter.MODEL_FILE).toString(), new OrtSession.SessionOptions());
             OnnxTensor in = OnnxTensor.createTensor(env, ids); OnnxTensor am = OnnxTensor.createTensor(env, mask);
             OrtSession.Result r = session.run(Map.of("input_ids", in, "attention_mask", am))) {
            float[][][] l = (float[][][]) r.get("logits").orElseThrow().getValue();
            float[] out = new float[l.length * l[0].length * l[0][0].length];
            int k = 0;
            for (float[][] b : l) {
                for (float[] t : b) {
                    System.arraycopy(t, 0, out, k, t.length);
                    k += t.length;
                }
            }
            return out;
        }
    }

    private static float[] torchScriptLogits(Path exportDir, long[][] ids) throws Exception {
        try (Model m = Model.newInstance("lopper", Device.cpu(), "PyTorch")) {
            m.load(exportDir, TorchScriptExporter.FILE.replace(".pt", ""));
            try (Predictor<NDList, NDList> p = m.newPredictor(new NoopTranslator())) {
                NDList out = p.predict(new NDList(m.getNDManager().create(flat(ids), new Shape(ids.length, ids[0].length))));
                return out.singletonOrThrow().toFloatArray();
            }
        }
    }

    private static long[] flat(long[][] ids) {
        long[] f = new long[ids.length * ids[0].length];
        for (int b = 0; b < ids.length; b++) {
            System.arraycopy(ids[b], 0, f, b * ids[0].length, ids[0].length);
        }
        return f;
    }

    private static double maxAbsDiff(float[] a, float[] b) {
        assertEquals(b.length, a.length);
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }
}
