package dev.lopper.eval;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.eval.backend.LopperBackend;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A model whose LM head is all zeros gives every token probability 1/V: its perplexity is the vocabulary size. */
class UniformLogitsTest {
    @TempDir
    Path tmp;

    @Test
    void zeroHeadPerplexityIsVocabularySize() throws Exception {
        Path src = tmp.resolve("src");
        ModelConfig c = RandomModels.write(src, RandomModels.llama());
        Path zero = tmp.resolve("zero-head");
        try (Checkpoint cp = Checkpoint.open(src); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            TensorMap t = new TensorMap(cp);
            t.put(WeightNames.LM_HEAD, m.zeros(new Shape(c.vocabSize(), c.hiddenSize()), DataType.FLOAT32));
            ModelWriter.save(zero, c, t, null, src, ModelWriter.DEFAULT_MAX_SHARD_BYTES, Map.of("format", "pt"));
        }
        Path text = tmp.resolve("t.txt");
        Files.writeString(text, Files.readString(Fixtures.text("test")).substring(0, 2000));
        try (Evaluator ev = new LopperBackend(zero, Device.cpu())) {
            long[] ids = ev.tokenizer().encode(EvalText.read(text, "text", "\n\n"));
            for (PerplexityPreset p : new PerplexityPreset[] {PerplexityPreset.LLM_PRUNER, PerplexityPreset.WANDA,
                    new PerplexityPreset("custom", 100, 30, "")}) {
                PerplexityReport r = StreamPerplexity.evaluate(ev, ids, p, 4, "t", "h");
                double rel = Math.abs(r.perplexity() - c.vocabSize()) / c.vocabSize();
                dev.lopper.model.testing.TestLog.printf("uniform logits, %s: perplexity %.9f (vocab %d, rel %.2g)%n", p.name(), r.perplexity(), c.vocabSize(), rel);
                assertTrue(rel < 1e-6, p.name() + ": " + r.perplexity());
            }
        }
        assertEquals(300, c.vocabSize());
    }
}
