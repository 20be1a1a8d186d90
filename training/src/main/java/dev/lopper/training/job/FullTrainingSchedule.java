package dev.lopper.training.job;

import dev.lopper.training.loop.AdamW;

import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.training.loop.Trainer;
import java.util.function.Consumer;
import dev.lopper.training.job.PruneWhileTraining;
import dev.lopper.training.loop.TrainOptions;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The engine's entry for the methods that train every weight and prune inside that training (EfficientLLM, BiP:
 * {@link PruneWhileTraining#METHODS}). Their loop is not prune -> LoRA -> merge: they cut inside one full-parameter
 * run ({@code FullTrainer}, in memory, weights and AdamW moments cut together), so {@link PruneSchedule#run} hands
 * them here. Same files and guarantees as the engine's other methods: the final model and its composed plan in
 * {@code --out} with {@code schedule.csv}/{@code schedule.png}, the work (checkpoints, loss and size curves) in
 * {@code OUT.schedule/}, and the same command resumes after a kill to the result of an uninterrupted run.
 *
 * <pre>{@code
 * new PruneSchedule().run(request);   // request.prune().criterion() "efficientllm" or "bip", with data and steps
 * }</pre>
 */
public final class FullTrainingSchedule {
    private FullTrainingSchedule() {
    }

    static boolean handles(String method) {
        return PruneWhileTraining.METHODS.contains(method);
    }

    static PruneSchedule.Result run(ScheduleRequest r, Consumer<Trainer<?>> onStart) throws IOException {
        String method = r.prune().criterion();
        if (r.data() == null) {
            throw new IllegalArgumentException("--method " + method + " trains the whole model: give --train-data FILE");
        }
        if (r.iterations() != null) {
            throw new IllegalArgumentException("--iterative applies to one-shot criteria; --method " + method + " prunes on its own schedule");
        }
        Path out = r.prune().out();
        Path work = PruneSchedule.workDir(out);
        TrainOptions o = r.steps() != null ? r.train().withSteps(r.steps()) : r.train();
        Progress progress = r.prune().progress();
        long bytes = PruneWhileTraining.trainingBytes(r.prune().model());
        progress.message(String.format(Locale.ROOT, "schedule: %s trains every weight: %s (weights, gradients, 2 AdamW moments, fp32) plus activations",
                method, PruneWhileTraining.mib(bytes)));
        PruneWhileTraining.Request q = new PruneWhileTraining.Request(r.prune().model(), method, r.prune().ratio(), r.data(), r.val(),
                0.05, r.valWindows(), work, o, r.prune().device(), r.prune().overwrite(), out);
        PruneWhileTraining.Outcome oc = PruneWhileTraining.run(q, new Trainer.Listener() {
            @Override
            public void step(Trainer.Point p, int total, double tokensPerSecond, double etaSeconds) {
                progress.message(String.format(Locale.ROOT, "train %d/%d loss %.4f lr %.3g %.0f tok/s ETA %.0fs", p.step(), total, p.trainLoss(),
                        p.lr(), tokensPerSecond, etaSeconds));
            }

            @Override
            public void pruned(int step, long before, long after) {
                progress.message(String.format(Locale.ROOT, "step %d: pruned %,d -> %,d parameters", step, before, after));
            }
        }, onStart);
        if (oc.pruned() == null) {
            throw new IOException("training was interrupted; run the same command again to resume");
        }
        List<ScheduleCurve.Row> rows = new ArrayList<>();
        long prunable = prunable(r.prune().model());
        for (Trainer.Point p : oc.train().history()) {
            rows.add(new ScheduleCurve.Row(1, p.step(), p.params(), (double) (oc.paramsBefore() - p.params()) / prunable, p.trainLoss(), p.valLoss()));
        }
        ScheduleCurve.writeCsv(rows, work.resolve("schedule.csv"));
        ScheduleCurve.writePng(rows, work.resolve("schedule.png"), "lopper prune " + method + " " + r.prune().model().getFileName());
        for (String f : new String[] {"schedule.csv", "schedule.png"}) {
            Files.copy(work.resolve(f), out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        }
        return new PruneSchedule.Result(out, oc.plan(), List.copyOf(rows), oc.train().resumedFrom());
    }

    private static long prunable(Path model) {
        try (ModelDir d = ModelDir.open(model)) {
            ModelConfig c = d.config();
            long p = 0;
            for (int l = 0; l < c.numLayers(); l++) {
                p += Allocation.prunable(c, c.layer(l), true, true, false);
            }
            return p;
        }
    }
}
