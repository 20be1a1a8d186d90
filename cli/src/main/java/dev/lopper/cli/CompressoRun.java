package dev.lopper.cli;

import dev.lopper.model.io.OutputLock;
import dev.lopper.recovery.LoraConfig;
import dev.lopper.recovery.compresso.Compresso;
import dev.lopper.recovery.compresso.CompressoOptions;
import dev.lopper.recovery.compresso.CompressoTrainer;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * {@code lopper prune MODEL --method compresso --ratio R --train-data FILE --steps N --out DIR}: turns
 * {@link PruneCommand}'s options into a {@link Compresso.Request}, prints a progress line per step and the report.
 * Ctrl-C writes a checkpoint after the current step; the same command resumes.
 */
final class CompressoRun {
    private CompressoRun() {
    }

    static int run(PruneCommand c, PrintWriter out, PrintWriter err) throws Exception {
        if (c.ratio == null) {
            throw new IllegalArgumentException("--ratio is required with --method compresso (the target fraction of head and channel parameters removed)");
        }
        PruneTrainingOptions t = c.training;
        if (t.trainData == null || !Files.exists(t.trainData)) {
            throw new IllegalArgumentException("--train-data " + t.trainData + ": " + (t.trainData == null ? "is required with --method compresso"
                    : "does not exist") + " (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        if (c.out == null) {
            throw new IllegalArgumentException("--out is required with --method compresso");
        }
        if (c.schedule.steps == null) {
            throw new IllegalArgumentException("--steps is required with --method compresso (optimizer steps of joint mask and LoRA training)");
        }
        // the shared training options are null unless given: then Compresso's official defaults (CompressoOptions)
        CompressoOptions d = CompressoOptions.defaults(c.ratio, c.schedule.steps);
        LoraConfig l = d.lora();
        LoraConfig lora = new LoraConfig(t.rank != null ? t.rank : l.rank(), t.alpha != null ? t.alpha : l.alpha(),
                t.dropout != null ? t.dropout : l.dropout(), t.targets != null ? new java.util.LinkedHashSet<>(t.targets) : l.targets());
        CompressoOptions o = d.withBatch(t.microBatch != null ? t.microBatch : d.microBatch(), t.accumulation != null ? t.accumulation : d.accumulation(),
                        t.seqLen != null ? t.seqLen : d.seqLen())
                .withLearningRates(t.lr != null ? t.lr : d.loraLr(), c.regLr != null ? c.regLr : d.regLr())
                .withSeed(c.seed).withPrompt(c.prompt).withLora(lora);
        if (t.checkpointEvery != null) {
            o = o.withCheckpointEvery(t.checkpointEvery);
        }
        Compresso.Request request = new Compresso.Request(c.model, t.trainData, c.out, o, c.options.device(), c.overwrite);
        boolean quiet = Boolean.getBoolean("lopper.quiet");
        CountDownLatch finished = new CountDownLatch(1);
        CompressoTrainer[] running = new CompressoTrainer[1];
        Thread onSignal = new Thread(() -> {
            if (running[0] != null) {
                running[0].requestStop();
                try {
                    finished.await(10, TimeUnit.MINUTES);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }, "lopper-compresso-stop");
        Runtime.getRuntime().addShutdownHook(onSignal);
        Compresso.Outcome r;
        try (OutputLock lock = OutputLock.acquire(c.out, "--out")) {
            r = Compresso.run(request, quiet ? CompressoTrainer.Listener.NONE : new Line(err), trainer -> running[0] = trainer);
        } finally {
            finished.countDown();
            try {
                Runtime.getRuntime().removeShutdownHook(onSignal);
            } catch (IllegalStateException shuttingDown) {
                // the JVM is exiting (Ctrl-C): the hook is running and has seen the checkpoint
            }
        }
        report(c, r, out);
        return r.interrupted() ? 130 : 0;
    }

    private static void report(PruneCommand c, Compresso.Outcome r, PrintWriter w) {
        CompressoTrainer.Point last = r.history().isEmpty() ? null : r.history().get(r.history().size() - 1);
        if (c.options.json) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("method", "compresso");
            m.put("steps", r.history().size());
            m.put("interrupted", r.interrupted());
            m.put("expected_sparsity", r.finalExpectedSparsity());
            m.put("achieved_ratio", r.plan() == null ? null : r.plan().result().achievedRatio());
            m.put("params_before", r.plan() == null ? null : r.plan().result().paramsBefore());
            m.put("params_after", r.plan() == null ? null : r.plan().result().paramsAfter());
            m.put("model", r.model() == null ? null : r.model().toString());
            m.put("csv", r.csv().toString());
            m.put("png", r.png() == null ? null : r.png().toString());
            Output.json(w, m);
            return;
        }
        if (r.interrupted()) {
            w.printf(Locale.ROOT, "interrupted at step %d; checkpoint saved in %s; run the same command to continue%n",
                    r.history().size(), c.out.resolve("checkpoints"));
        } else {
            var res = r.plan().result();
            w.printf(Locale.ROOT, "pruned %s with compresso: %,d -> %,d parameters (%.2f%% of heads and channels removed; target %.2f%%, "
                            + "expected sparsity of the masks %.2f%%)%n", c.model, res.paramsBefore(), res.paramsAfter(),
                    100 * res.achievedRatio(), 100 * c.ratio, 100 * r.finalExpectedSparsity());
            w.printf(Locale.ROOT, "  model: %s%n", r.model());
        }
        if (last != null) {
            w.printf(Locale.ROOT, "  last step: LM loss %.4f, Lagrangian %.4g, lambda_1 %.4g, lambda_2 %.4g%n", last.loss(), last.lagrangian(),
                    last.lambda1(), last.lambda2());
        }
        w.printf(Locale.ROOT, "  curves: %s%s%n", r.csv(), r.png() == null ? "" : ", " + r.png());
        w.flush();
    }

    /** One line per step on stderr: step, LM loss, expected / target sparsity, tokens/s, ETA. */
    private static final class Line implements CompressoTrainer.Listener {
        private final PrintWriter err;

        Line(PrintWriter err) {
            this.err = err;
        }

        @Override
        public void step(CompressoTrainer.Point p, int total, double tokensPerSecond, double etaSeconds) {
            err.printf(Locale.ROOT, "compresso step %d/%d  loss %.4f  expected sparsity %.4f (target %.4f)  %.0f tok/s  ETA %.0fs%n",
                    p.step(), total, p.loss(), p.expectedSparsity(), p.target(), tokensPerSecond, etaSeconds);
            err.flush();
        }

        @Override
        public void resumed(int step, Path dir) {
            err.printf(Locale.ROOT, "resuming from step %d (%s)%n", step, dir);
            err.flush();
        }
    }
}
