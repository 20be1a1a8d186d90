package dev.lopper.eval.mc;

import ai.djl.Device;
import dev.lopper.eval.Evaluator;
import dev.lopper.eval.backend.LopperBackend;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A hand-made task whose answers are known, lm-eval's metrics, the public formats' readers and kjv-cloze. */
class McTaskTest {
    @TempDir
    Path tmp;

    /** Every token costs 1 nat except the byte 'a' (free): log-likelihoods are countable by hand. */
    private static Evaluator stub(Evaluator real) {
        long a = real.tokenizer().encodePlain("a")[0];
        return new Evaluator() {
            public String backend() { return "stub"; }
            public Path modelDir() { return real.modelDir(); }
            public ModelConfig config() { return real.config(); }
            public Tokenizer tokenizer() { return real.tokenizer(); }
            public String device() { return "stub"; }
            public double[][] logProbs(long[][] w) {
                double[][] out = new double[w.length][w[0].length - 1];
                for (int b = 0; b < w.length; b++) {
                    for (int t = 0; t + 1 < w[b].length; t++) {
                        out[b][t] = w[b][t + 1] == a ? 0 : -1;
                    }
                }
                return out;
            }
            public DecodeTiming decode(long[] p, int s) { throw new UnsupportedOperationException(); }
            public boolean kvCache() { return false; }
            public void close() { }
        };
    }

    @Test
    void handMadeTaskKnownAnswers() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama());
        try (Evaluator real = new LopperBackend(dir, Device.cpu())) {
            Evaluator ev = stub(real);
            // " aaaa": 1 nat (the space); " b": 2 nats; " " + 20 b: 21 nats (1.05 per byte)
            McExample e1 = McExample.of("Q", List.of("b", "aaaa"), 1);                    // acc right, acc_norm right
            McExample e2 = McExample.of("Q", List.of("b", "bbbbbbbbbbbbbbbbbbbb"), 0);    // acc right (-2 > -21), norm wrong (-2 < -1.05)
            McExample e3 = McExample.of("Q", List.of("bbbbbbbbbbbbbbbbbbbb", "b"), 0);    // acc wrong, norm right
            McExample e4 = McExample.of("Q ", List.of("aa", "b"), 0);                     // trailing space moves to the continuation
            assertEquals(-1, McScorer.logLikelihoods(ev, e1)[1], 1e-12);
            assertEquals(-3, McScorer.logLikelihoods(ev, e4)[1], 1e-12, "'Q ' + ' b' scores '  b': two spaces and a b");
            McResult r = McScorer.score(ev, List.of(e1, e2, e3, e4), "hand", "inline", "h");
            assertEquals(List.of(1, 0, 1, 0), r.predictions());
            assertEquals(0.75, r.acc(), 1e-12);
            assertEquals(0.75, r.accNorm(), 1e-12);
            assertEquals(0.25, r.accStderr(), 1e-12, "sample sd 0.5 / sqrt(4)");
        }
    }

    private Path file(String name, String... lines) throws Exception {
        Path f = tmp.resolve(name);
        Files.write(f, List.of(lines));
        return f;
    }

    @Test
    void publicFormats() throws Exception {
        McExample g = McReaders.read("generic", file("g.jsonl", "{\"context\": \"2 + 2 =\", \"choices\": [\"3\", \"4\"], \"label\": 1}"), 0).get(0);
        assertEquals("2 + 2 =", g.context(0));
        assertEquals(1, g.label());
        McExample arc = McReaders.read("arc-easy", file("arc.jsonl", "{\"id\": \"Mercury_1\", \"question\": {\"stem\": \"Which is a metal?\", "
                + "\"choices\": [{\"text\": \"wood\", \"label\": \"A\"}, {\"text\": \"iron\", \"label\": \"B\"}, {\"text\": \"glass\", \"label\": \"C\"}]}, \"answerKey\": \"B\"}"), 0).get(0);
        assertEquals("Question: Which is a metal?\nAnswer:", arc.context(0));
        assertEquals(List.of("wood", "iron", "glass"), arc.choices());
        assertEquals(1, arc.label());
        McExample arcHf = McReaders.read("arc-challenge", file("arc-hf.jsonl", "{\"question\": \"Pick 2\", \"choices\": {\"text\": [\"one\", \"two\"], "
                + "\"label\": [\"1\", \"2\"]}, \"answerKey\": \"2\"}"), 0).get(0);
        assertEquals(1, arcHf.label());
        McExample obqa = McReaders.read("openbookqa", file("obqa.jsonl", "{\"id\": \"7-980\", \"question\": {\"stem\": \"The sun is responsible for\", "
                + "\"choices\": [{\"text\": \"puppies learning new tricks\", \"label\": \"A\"}, {\"text\": \"plants sprouting\", \"label\": \"D\"}]}, \"answerKey\": \"D\"}"), 0).get(0);
        assertEquals("The sun is responsible for", obqa.context(0));
        assertEquals(1, obqa.label());
        Path piqa = file("valid.jsonl", "{\"goal\": \"Open a jar\", \"sol1\": \"Twist the lid.\", \"sol2\": \"Paint the lid.\"}");
        file("valid-labels.lst", "0");
        McExample p = McReaders.read("piqa", piqa, 0).get(0);
        assertEquals("Question: Open a jar\nAnswer:", p.context(0));
        assertEquals(0, p.label());
        McExample h = McReaders.read("hellaswag", file("hs.jsonl", "{\"ind\": 24, \"activity_label\": \"Roof shingle removal\", \"ctx_a\": "
                + "\"A man is sitting on a roof.\", \"ctx_b\": \"he\", \"ctx\": \"A man is sitting on a roof. he\", \"endings\": "
                + "[\"is using wrap to wrap a pair of skis.\", \"starts pulling up roofing [title] on a roof.\"], \"label\": 1}"), 0).get(0);
        assertEquals("Roof shingle removal: A man is sitting on a roof. He", h.context(0));
        assertEquals("starts pulling up roofing. on a roof.", h.choices().get(1));
        McExample w = McReaders.read("winogrande", file("wg.jsonl", "{\"qID\": \"x\", \"sentence\": \"The cup did not fit in the box because the _ "
                + "was too big.\", \"option1\": \"cup\", \"option2\": \"box\", \"answer\": \"1\"}"), 0).get(0);
        assertEquals("The cup did not fit in the box because the cup", w.context(0));
        assertEquals("The cup did not fit in the box because the box", w.context(1));
        assertEquals("was too big.", w.choices().get(0));
        assertEquals(0, w.label());
        McExample b = McReaders.read("boolq", file("bq.jsonl", "{\"question\": \"is the sky blue\", \"title\": \"Sky\", \"answer\": true, "
                + "\"passage\": \"The sky is blue.\"}"), 0).get(0);
        assertEquals("The sky is blue.\nQuestion: is the sky blue?\nAnswer:", b.context(0));
        assertEquals(List.of("no", "yes"), b.choices());
        assertEquals(1, b.label());
        Exception e = assertThrows(RuntimeException.class, () -> McReaders.read("generic", file("bad.jsonl", "{\"context\": \"x\", \"label\": 0}"), 0));
        assertTrue(e.getMessage().contains("bad.jsonl") && e.getMessage().contains("line 1") && e.getMessage().contains("choices"), e.getMessage());
    }

    @Test
    void kjvClozeIsSeededWithFourEndings() {
        List<McExample> a = KjvCloze.generate(Fixtures.text("test"), 50, 7);
        List<McExample> b = KjvCloze.generate(Fixtures.text("test"), 50, 7);
        assertEquals(a, b);
        assertEquals(50, a.size());
        long distinctLabels = a.stream().mapToInt(McExample::label).distinct().count();
        assertEquals(4, distinctLabels);
        a.forEach(x -> assertEquals(4, x.choices().size()));
    }
}
