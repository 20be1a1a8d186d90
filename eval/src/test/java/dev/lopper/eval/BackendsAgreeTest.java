package dev.lopper.eval;

import ai.djl.Device;
import dev.lopper.eval.backend.Backends;
import dev.lopper.eval.mc.McExample;
import dev.lopper.eval.mc.McResult;
import dev.lopper.eval.mc.McScorer;
import dev.lopper.export.ExportFormat;
import dev.lopper.export.Exporter;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The same random model as a Lopper directory, an ONNX export, an ONNX-with-KV-cache export and a TorchScript
 * export: the same perplexity (within 0.1%), the same multiple-choice answers, the same greedy tokens.
 */
class BackendsAgreeTest {
    @TempDir
    Path tmp;

    @Test
    void fourFormsOneModel() throws Exception {
        Path dense = tmp.resolve("dense");
        RandomModels.write(dense, RandomModels.llama());
        Map<String, Path> forms = new LinkedHashMap<>();
        forms.put("lopper", dense);
        forms.put("onnx", Exporter.export(dense, ExportFormat.ONNX, tmp.resolve("onnx")).dir());
        forms.put("onnx-kv", Exporter.export(dense, ExportFormat.ONNX_KV, tmp.resolve("onnx-kv")).dir());
        forms.put("torchscript", Exporter.export(dense, ExportFormat.TORCHSCRIPT, tmp.resolve("ts")).dir());
        Path text = tmp.resolve("text.txt");
        Files.writeString(text, Files.readString(Fixtures.text("test")).substring(0, 3000));
        List<McExample> task = new ArrayList<>();
        String[] verses = Files.readString(Fixtures.text("test")).split("\n");
        for (int i = 0; i < 6; i++) {
            task.add(McExample.of(verses[2 * i + 1].substring(0, 30), List.of("and the", "of Moab", "she said unto"), i % 3));
        }
        PerplexityPreset preset = new PerplexityPreset("custom", 64, 32, "\n\n");
        double ref = 0;
        List<Integer> refAnswers = null;
        long[] refTokens = null;
        for (Map.Entry<String, Path> f : forms.entrySet()) {
            try (Evaluator ev = Backends.open(f.getValue(), Device.cpu())) {
                assertEquals(f.getKey(), ev.backend());
                long[] ids = ev.tokenizer().encode(Files.readString(text));
                PerplexityReport p = StreamPerplexity.evaluate(ev, ids, preset, 4, "text", "h");
                PerplexityReport paper = StreamPerplexity.evaluate(ev, ids, PerplexityPreset.LLM_PRUNER, 4, "text", "h");
                McResult mc = McScorer.score(ev, task, "hand", "inline", "h");
                Evaluator.DecodeTiming d = ev.decode(new long[] {1, 40, 50, 60}, 6);
                dev.lopper.model.testing.TestLog.printf("%-12s ppl(64/32) %.6f ppl(llm-pruner) %.6f acc %.3f answers %s tokens %s%n", f.getKey(),
                        p.perplexity(), paper.perplexity(), mc.acc(), mc.predictions(), java.util.Arrays.toString(d.tokens()));
                assertEquals(ids.length - 1, p.scoredTokens(), "the sliding window scores every token but the first once");
                if (refAnswers == null) {
                    ref = p.perplexity();
                    refAnswers = mc.predictions();
                    refTokens = d.tokens();
                } else {
                    double rel = Math.abs(p.perplexity() - ref) / ref;
                    dev.lopper.model.testing.TestLog.printf("%-12s relative ppl difference to lopper: %.3g%n", f.getKey(), rel);
                    assertTrue(rel < 1e-3, f.getKey() + ": perplexity " + p.perplexity() + " vs lopper " + ref);
                    assertEquals(refAnswers, mc.predictions(), f.getKey() + ": multiple-choice answers");
                    assertArrayEquals(refTokens, d.tokens(), f.getKey() + ": greedy tokens");
                }
                assertEquals(f.getKey().equals("lopper") || f.getKey().equals("onnx-kv"), ev.kvCache());
                assertFalse(Backends.weightFiles(f.getValue()).isEmpty());
            }
        }
    }
}
