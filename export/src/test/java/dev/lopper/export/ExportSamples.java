package dev.lopper.export;

import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Writes exports plus reference logits from Lopper's Java forward pass for the second-ecosystem checks
 * (scripts/check-torchscript.py, scripts/check-onnx-node): for a dense and a pruned (non-uniform, FLAP biases)
 * model, {@code OUT/<name>/{onnx,onnx-kv,torchscript}/} and {@code OUT/<name>/reference.json} (ids, shape) with
 * {@code reference.f32} (logits, little-endian fp32, row-major [batch, sequence, vocab]).
 *
 * <p>Usage: {@code ExportSamples OUT [MODEL]}; MODEL defaults to fixtures/lopper-tiny, else a random model.
 */
public final class ExportSamples {
    private ExportSamples() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: ExportSamples OUT [MODEL]");
            System.exit(2);
        }
        Path out = Path.of(args[0]).toAbsolutePath();
        Files.createDirectories(out);
        Path model = args.length > 1 ? Path.of(args[1]) : TestModels.fixture();
        if (model == null) {
            model = out.resolve("random-model");
            RandomModels.write(model, RandomModels.llama().withLayers(4).withHeads(8, 4).withDtype(DataType.BFLOAT16));
        }
        ModelConfig c = ModelConfig.load(model);
        Path pruned = TestModels.slice(model, TestModels.nonUniform(c, 0.5, true), out.resolve("pruned-model"));
        sample(model, out.resolve("dense"));
        sample(pruned, out.resolve("pruned"));
        System.out.println("wrote " + out.resolve("dense") + " and " + out.resolve("pruned") + " (model " + model + ")");
    }

    static void sample(Path model, Path dir) throws IOException {
        Files.createDirectories(dir);
        for (ExportFormat f : new ExportFormat[] {ExportFormat.ONNX, ExportFormat.ONNX_KV, ExportFormat.TORCHSCRIPT}) {
            Exporter.export(model, f, dir.resolve(f.cliName()));
        }
        ModelConfig c = ModelConfig.load(model);
        int batch = 2;
        int len = 16;
        long[][] ids = Reference.ids(batch, len, c.vocabSize(), 11);
        float[] logits = Reference.logits(model, ids, null);
        ObjectMapper m = new ObjectMapper();
        ObjectNode j = m.createObjectNode();
        ArrayNode idsJson = j.putArray("ids");
        for (long[] row : ids) {
            ArrayNode r = idsJson.addArray();
            for (long id : row) {
                r.add(id);
            }
        }
        j.putArray("shape").add(batch).add(len).add(c.vocabSize());
        j.put("logits_file", "reference.f32");
        j.put("tolerance", 1e-4);
        m.writerWithDefaultPrettyPrinter().writeValue(dir.resolve("reference.json").toFile(), j);
        ByteBuffer b = ByteBuffer.allocate(logits.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (float x : logits) {
            b.putFloat(x);
        }
        Files.write(dir.resolve("reference.f32"), b.array());
    }
}
