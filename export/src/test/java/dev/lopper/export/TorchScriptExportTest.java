package dev.lopper.export;

import ai.djl.Device;
import ai.djl.Model;
import ai.djl.inference.Predictor;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.translate.NoopTranslator;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.ZipFile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * TorchScript archives written from Java, loaded by libtorch (torch::jit::load through DJL's PyTorch engine) and
 * run against Lopper's own forward pass: max abs diff <= 1e-4 (fp32).
 */
class TorchScriptExportTest {
    static final double TOL = 1e-4;

    @TempDir
    Path tmp;

    private Path model(RandomModels.Spec spec, boolean pruned) throws Exception {
        return TestModels.variantDir(tmp, spec, pruned);
    }

    /** Runs the archive in libtorch via DJL: logits [B * T * V]. */
    static float[] libtorchLogits(Path exportDir, long[][] ids) throws Exception {
        try (Model m = Model.newInstance("lopper", Device.cpu(), "PyTorch")) {
            m.load(exportDir, "model");
            try (Predictor<NDList, NDList> p = m.newPredictor(new NoopTranslator())) {
                NDArray x = m.getNDManager().create(Reference.flat(ids), new Shape(ids.length, ids[0].length));
                NDList out = p.predict(new NDList(x));
                assertEquals(1, out.size());
                NDArray logits = out.singletonOrThrow();
                assertEquals(DataType.FLOAT32, logits.getDataType());
                return logits.toFloatArray();
            }
        }
    }

    private void check(Path dir, int len) throws Exception {
        Exporter.Result r = Exporter.export(dir, ExportFormat.TORCHSCRIPT, tmp.resolve("ts"));
        int vocab = ModelConfig.load(dir).vocabSize();
        long[][] ids = Reference.ids(2, len, vocab, 1);
        double diff = Reference.maxAbsDiff(libtorchLogits(r.dir(), ids), Reference.logits(dir, ids, null));
        dev.lopper.model.testing.TestLog.printf("TorchScript %s/%s: max abs diff %.3g%n", ModelConfig.load(dir).family(), dir.getFileName(), diff);
        assertTrue(diff <= TOL, dir.getFileName() + ": libtorch vs forward pass max abs diff " + diff);
        long[][] other = Reference.ids(1, 7, vocab, 9);
        double diff2 = Reference.maxAbsDiff(libtorchLogits(r.dir(), other), Reference.logits(dir, other, null));
        assertTrue(diff2 <= TOL, "batch 1, length 7: max abs diff " + diff2);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("dev.lopper.export.TestModels#variants")
    void libtorchRunsArchiveLikeForwardPass(String name, RandomModels.Spec spec, boolean pruned) throws Exception {
        check(model(spec, pruned), 24);
    }

    @Test
    void fixtureDenseAndPruned() throws Exception {
        Path fixture = TestModels.fixture();
        assumeTrue(fixture != null, "fixtures/lopper-tiny is not in this checkout");
        check(fixture, 32);
        ModelConfig c = ModelConfig.load(fixture);
        check(TestModels.slice(fixture, TestModels.nonUniform(c, 0.5, true), tmp.resolve("fixture-pruned")), 32);
    }

    /** The archive has torch.jit.save's layout, stored entries, and a tied head shares the embedding's storage. */
    @Test
    void archiveLayout() throws Exception {
        Path dir = model(RandomModels.llama().withTied(true), false);
        Exporter.Result r = Exporter.export(dir, ExportFormat.TORCHSCRIPT, tmp.resolve("ts"));
        Path pt = r.dir().resolve(TorchScriptExporter.FILE);
        try (ZipFile zip = new ZipFile(pt.toFile())) {
            for (String e : new String[] {"model/version", "model/code/__torch__.py", "model/data.pkl", "model/constants.pkl", "model/data/0"}) {
                assertNotNull(zip.getEntry(e), e);
            }
            assertEquals(TorchScriptExporter.VERSION + "\n", new String(zip.getInputStream(zip.getEntry("model/version")).readAllBytes()));
            long storages = zip.stream().filter(e -> e.getName().startsWith("model/data/")).count();
            // inv_freq + embed + 2 layers x 9 + norm; no separate lm_head storage when tied
            assertEquals(1 + 1 + 2 * 9 + 1, storages);
            byte[] embed = zip.getInputStream(zip.getEntry("model/data/1")).readAllBytes();
            assertEquals(300L * 64 * 4, embed.length);
        }
        assertTrue(Files.size(pt) > 300L * 64 * 4);
    }
}
