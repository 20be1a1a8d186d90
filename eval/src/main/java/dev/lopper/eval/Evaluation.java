package dev.lopper.eval;

import dev.lopper.eval.backend.Backends;
import dev.lopper.eval.mc.KjvCloze;
import dev.lopper.eval.mc.McExample;
import dev.lopper.eval.mc.McReaders;
import dev.lopper.eval.mc.McResult;
import dev.lopper.eval.mc.McScorer;
import dev.lopper.eval.report.EvalReport;
import dev.lopper.eval.report.Machine;
import dev.lopper.eval.report.SpeedReport;
import dev.lopper.model.LopperVersion;
import dev.lopper.model.ModelStats;
import dev.lopper.pruning.RunStats;
import dev.lopper.pruning.plan.ModelHash;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Runs an {@link EvalRequest}: opens the backend that fits the model path, measures perplexity, multiple-choice
 * accuracy and speed, and returns the {@link EvalReport} with provenance. It never prints; progress goes to the
 * request's {@code Progress} (and the counters' bars on stderr).
 *
 * <pre>{@code
 * EvalReport r = new Evaluation().run(EvalRequest.builder(Path.of("fixtures/lopper-tiny"))
 *         .text(Path.of("fixtures/text/kjv-test.txt")).task(EvalRequest.Task.kjvCloze(Path.of("fixtures/text/kjv-test.txt")))
 *         .build());
 * }</pre>
 */
public final class Evaluation {
    public EvalReport run(EvalRequest r) {
        try (Evaluator ev = Backends.open(r.model(), r.device())) {
            return run(ev, r);
        }
    }

    /** Runs {@code r} on an open evaluator (its model path is only recorded). */
    public EvalReport run(Evaluator ev, EvalRequest r) {
        r.progress().stage("eval " + r.model() + " (" + ev.backend() + ")");
        PerplexityReport ppl = null;
        if (r.text() != null) {
            r.progress().stage("perplexity");
            long[] ids = ev.tokenizer().encode(EvalText.read(r.text(), r.textField(), r.preset().joiner()));
            ppl = StreamPerplexity.evaluate(ev, ids, r.preset(), r.batch(), r.text().toString(), EvalText.hash(r.text()));
        }
        List<McResult> tasks = new ArrayList<>();
        for (EvalRequest.Task t : r.tasks()) {
            r.progress().stage("task " + t.name());
            tasks.add(McScorer.score(ev, examples(t, r.limit(), r.seed()), t.name(), t.file().toString(), EvalText.hash(t.file())));
        }
        SpeedReport speed = r.speed() ? speed(ev, r.prefillTokens(), r.decodeTokens(), r.seed()) : null;
        long bytes = Backends.weightFiles(r.model()).stream().mapToLong(Evaluation::size).sum();
        return new EvalReport(EvalReport.FORMAT, LopperVersion.get(), Instant.now().toString(), r.model().toString(),
                modelHash(r.model(), ev.backend()), ev.backend(), Machine.current(ev.device()), r.seed(),
                ModelStats.parameters(ev.config()), bytes, ppl, tasks, speed);
    }

    /** The examples of a task (kjv-cloze generated with {@code seed}). */
    public static List<McExample> examples(EvalRequest.Task t, int limit, long seed) {
        if (t.format().equals(KjvCloze.NAME)) {
            return KjvCloze.generate(t.file(), limit > 0 ? limit : 200, seed);
        }
        return McReaders.read(t.format(), t.file(), limit);
    }

    /**
     * Prefill: one sequence of {@code prefillTokens} random ids, one warm-up then the median of 3 runs. Decode: greedy
     * from a 16-token prompt for {@code decodeTokens} steps, one warm-up then the median of 3.
     */
    public static SpeedReport speed(Evaluator ev, int prefillTokens, int decodeTokens, long seed) {
        int vocab = ev.config().vocabSize();
        int len = Math.min(prefillTokens, ev.config().maxPositionEmbeddings());
        SplittableRandom rnd = new SplittableRandom(seed);
        long[] ids = new long[len];
        for (int i = 0; i < len; i++) {
            ids[i] = rnd.nextInt(vocab);
        }
        double[] prefill = new double[3];
        ev.logProbs(new long[][] {ids});
        for (int i = 0; i < prefill.length; i++) {
            long t0 = System.nanoTime();
            ev.logProbs(new long[][] {ids});
            prefill[i] = (System.nanoTime() - t0) / 1e9;
        }
        int steps = Math.max(2, Math.min(decodeTokens, ev.config().maxPositionEmbeddings() - 16));
        long[] prompt = Arrays.copyOf(ids, Math.min(16, len));
        double[] decode = new double[3];
        ev.decode(prompt, steps);
        for (int i = 0; i < decode.length; i++) {
            decode[i] = ev.decode(prompt, steps).decodeSeconds();
        }
        return new SpeedReport(len, len / median(prefill), steps, (steps - 1) / median(decode), ev.kvCache(), RunStats.peakRss());
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }

    private static long size(Path p) {
        try {
            return Files.size(p);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * A Lopper directory: {@link ModelHash} (config.json + safetensors headers and sampled data, what plans record).
     * An export: "sha256:" of config.json and each weight file's name, size, first and last 64 KiB.
     */
    public static String modelHash(Path dir, String backend) {
        if (backend.equals("lopper")) {
            return ModelHash.of(dir);
        }
        try {
            java.security.MessageDigest md = java.security.MessageDigest.getInstance("SHA-256");
            md.update(Files.readAllBytes(dir.resolve("config.json")));
            for (Path f : Backends.weightFiles(dir)) {
                md.update(f.getFileName().toString().getBytes(java.nio.charset.StandardCharsets.UTF_8));
                long n = Files.size(f);
                md.update(java.nio.ByteBuffer.allocate(8).putLong(n).array());
                try (var ch = java.nio.channels.FileChannel.open(f)) {
                    int k = (int) Math.min(65536, n);
                    java.nio.ByteBuffer head = java.nio.ByteBuffer.allocate(k);
                    ch.read(head, 0);
                    md.update(head.flip());
                    java.nio.ByteBuffer tail = java.nio.ByteBuffer.allocate(k);
                    ch.read(tail, n - k);
                    md.update(tail.flip());
                }
            }
            return "sha256:" + java.util.HexFormat.of().formatHex(md.digest());
        } catch (IOException e) {
            throw new UncheckedIOException(dir + ": cannot hash the model: " + e.getMessage(), e);
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
