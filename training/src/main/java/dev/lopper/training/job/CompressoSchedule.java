package dev.lopper.training.job;

import dev.lopper.training.job.ScheduleMethods;

import dev.lopper.model.util.Progress;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.job.Compresso;
import dev.lopper.training.method.CompressoOptions;
import dev.lopper.training.loop.Trainer;
import java.util.function.Consumer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The engine's entry for Compresso ({@code --method compresso}): hard-concrete masks trained jointly with LoRA
 * under the Lagrangian size constraint, then the deterministic masks, LoRA merged and surgery
 * ({@link Compresso}). Its loop is not prune -> LoRA -> merge: the masks learn inside one training run, so
 * {@link PruneSchedule#run} hands it here. Same files and guarantees as the engine's other methods: the final model
 * and its plan in {@code --out} with {@code schedule.csv}/{@code schedule.png}, the work (checkpoints,
 * {@code compresso.csv}/{@code .png} with the Lagrangian, sparsities and lambdas) in {@code OUT.schedule/}, and the
 * same command resumes after a kill from the newest checkpoint.
 *
 * <p>Defaults are the official Compresso ones ({@link CompressoOptions#defaults}); the request's training and LoRA
 * options carry them where the user gave nothing ({@link ScheduleMethods#trainDefaults}). Method options in the
 * request's criterion options: {@code reg-lr} (masks and Lagrange multipliers) and {@code prompt}.
 *
 * <pre>{@code
 * new PruneSchedule().run(request);   // request.prune().criterion() "compresso", with data and steps
 * }</pre>
 */
public final class CompressoSchedule {
    static final String NAME = "compresso";

    private CompressoSchedule() {
    }

    static boolean handles(String method) {
        return NAME.equals(method);
    }

    /** Compresso's official training settings over {@code steps} steps, as the engine's training options. */
    static TrainOptions trainDefaults(int steps, long seed) {
        CompressoOptions d = CompressoOptions.defaults(0.5, steps);
        // warm-up 0: the official LoRA schedule is HF's linear decay without warm-up
        return new TrainOptions(steps, d.microBatch(), d.accumulation(), d.seqLen(), d.loraLr(), 0, 0, d.maxGradNorm(),
                Math.max(1, steps / 10), d.checkpointEvery(), 0, seed);
    }

    static LoraConfig loraDefaults() {
        return CompressoOptions.officialLora();
    }

    /** The request as Compresso's options (the request's training options already hold its defaults or the user's). */
    static CompressoOptions options(ScheduleRequest r) {
        TrainOptions t = r.train();
        CompressoOptions d = CompressoOptions.defaults(r.prune().ratio(), r.steps());
        Map<String, String> m = r.prune().criterionOptions();
        double regLr = m.containsKey("reg-lr") ? Double.parseDouble(m.get("reg-lr")) : d.regLr();
        return d.withBatch(t.microBatch(), t.accumulation(), t.seqLen()).withLearningRates(t.learningRate(), regLr)
                .withSeed(t.seed()).withPrompt(m.get("prompt")).withLora(r.lora()).withCheckpointEvery(t.checkpointEvery());
    }

    static PruneSchedule.Result run(ScheduleRequest r, Consumer<Trainer<?>> onStart) throws IOException {
        if (r.data() == null) {
            throw new IllegalArgumentException("--train-data is required with --method compresso (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        if (!Files.exists(r.data())) {
            throw new IllegalArgumentException("--train-data " + r.data() + ": does not exist (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        if (r.steps() == null) {
            throw new IllegalArgumentException("--steps is required with --method compresso (optimizer steps of joint mask and LoRA training)");
        }
        if (r.iterations() != null) {
            throw new IllegalArgumentException("--iterative applies to one-shot criteria; --method compresso prunes on its own schedule");
        }
        Path out = r.prune().out();
        Path work = PruneSchedule.workDir(out);
        CompressoOptions o = options(r);
        Progress progress = r.prune().progress();
        progress.message(String.format(Locale.ROOT, "schedule: compresso target=%s steps=%d lr=%s reg-lr=%s lora r=%d alpha=%s on %s",
                o.target(), o.steps(), o.loraLr(), o.regLr(), o.lora().rank(), o.lora().alpha(), o.lora().targets()));
        Compresso.Request q = new Compresso.Request(r.prune().model(), r.data(), work, o, r.prune().device(), r.prune().overwrite(), out);
        int[] resumedAfter = {0};
        Compresso.Outcome oc = Compresso.run(q, new Trainer.Listener() {
            @Override
            public void step(Trainer.Point p, int total, double tokensPerSecond, double etaSeconds) {
                progress.message(String.format(Locale.ROOT, "compresso step %d/%d  loss %.4f  expected sparsity %.4f (target %.4f)  %.0f tok/s  ETA %.0fs",
                        p.step(), total, p.trainLoss(), p.metrics().get("expected_sparsity"), p.metrics().get("target_sparsity"),
                        tokensPerSecond, etaSeconds));
            }

            @Override
            public void resumed(int step, Path dir) {
                resumedAfter[0] = step;
                progress.message(String.format(Locale.ROOT, "resuming from step %d (%s)", step, dir));
            }
        }, onStart);
        if (oc.plan() == null) {
            throw new IOException("training was interrupted; run the same command again to resume");
        }
        PruningPlan plan = oc.plan();
        PruningPlan.Result res = plan.result();
        List<ScheduleCurve.Row> rows = new ArrayList<>();
        for (Trainer.Point p : oc.history()) {
            // the model keeps its size while the masks learn: params is the expected size under the masks
            double sparsity = p.metrics().get("expected_sparsity");
            long expected = Math.round(res.paramsBefore() - sparsity * res.prunableParams());
            rows.add(new ScheduleCurve.Row(1, p.step(), expected, sparsity, p.trainLoss(), null));
        }
        ScheduleCurve.writeCsv(rows, work.resolve("schedule.csv"));
        ScheduleCurve.writePng(rows, work.resolve("schedule.png"), "lopper prune compresso " + r.prune().model().getFileName());
        for (String f : new String[] {"schedule.csv", "schedule.png"}) {
            Files.copy(work.resolve(f), out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        }
        return new PruneSchedule.Result(out, plan, List.copyOf(rows), resumedAfter[0]);
    }
}
