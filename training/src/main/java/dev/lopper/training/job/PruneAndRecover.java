package dev.lopper.training.job;


import dev.lopper.model.ModelDir;

import dev.lopper.training.loop.Trainer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.io.OutputLock;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.PruneResult;
import dev.lopper.pruning.Pruner;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;

import java.io.IOException;
import dev.lopper.model.io.AtomicFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * Pruning followed by LoRA recovery in one resumable job, as {@code lopper prune ... --recover-steps N} runs it:
 * {@link Pruner} writes the pruned model into the job folder, {@link Recovery} trains adapters on it and writes the
 * merged model to {@code OUT}, a plain HF model directory that every command reads. The job folder ({@link JobDir}):
 *
 * <pre>
 *   OUT/                     the pruned model with the trained adapters merged in (HF directory), curve.csv/png
 *   OUT.job/job.json         the job (pruning and recovery settings): the same command resumes
 *   OUT.job/pruned/          the pruned model before recovery
 *   OUT.job/checkpoints/     training checkpoints; OUT.job/adapter/ (PEFT); OUT.job/curve.csv, .png
 * </pre>
 *
 * Running the same job again continues: a finished pruning step is reused (it is deterministic, and its
 * calibration resumes after the last finished layer when it was killed), training resumes from its last
 * checkpoint. The result equals {@code Pruner} then {@code Recovery} run separately with the same settings.
 *
 * <pre>{@code
 * PruneRequest prune = PruneRequest.builder(model).criterion("flap").ratio(0.2).calibration(text).out(out).build();
 * PruneAndRecover.Request r = new PruneAndRecover.Request(prune, new Recovery.Settings(null, null, LoraConfig.defaults(),
 *         TrainOptions.defaults(100), 0.05, 16, DataType.FLOAT32, false, null, false));
 * PruneAndRecover.check(r);                      // bad combinations fail here, before any work
 * PruneAndRecover.Outcome o = PruneAndRecover.run(r, Trainer.Listener.NONE, trainer -> { });
 * }</pre>
 */
public final class PruneAndRecover {
    private static final String KIND = "prune-and-recover";

    private PruneAndRecover() {
    }

    /**
     * @param prune the pruning job; its {@code out} is where the recovered model goes, its {@code overwrite} lets
     *              an earlier OUT that Lopper wrote be replaced (and an earlier job with other settings be started over)
     * @param recovery how the pruned model trains: its {@code data} null for the pruning's calibration text, its
     *                 {@code mergedType} null for the pruned model's dtype, its {@code distill} usually from the
     *                 unpruned model itself
     */
    public record Request(PruneRequest prune, Recovery.Settings recovery) {
        /** The training text: the recovery's, else the calibration text. */
        public Path data() {
            return recovery.data() != null ? recovery.data() : prune.calibration();
        }

        /** The recovery's settings as the job trains with them (the data resolved, paths normalized: job.json's are). */
        Recovery.Settings training() {
            return recovery.withData(abs(data()), abs(recovery.val()));
        }
    }

    /**
     * What the job did. {@code prune} is null when an earlier run's pruned model was reused; {@code out} is null
     * when training was interrupted (the checkpoint is in {@code job}).
     */
    public record Outcome(PruneResult prune, Path pruned, Recovery.Outcome recovery, Path out, Path job) {
    }

    /**
     * Checks what can be checked before any work: an output, training data, the work directory and earlier runs.
     * Throws {@link IllegalArgumentException} with a one-line message.
     */
    public static void check(Request r) throws IOException {
        PruneRequest p = r.prune();
        if (p.out() == null) {
            throw new IllegalArgumentException("--recover-steps needs --out DIR (where the recovered model goes); --plan-out alone writes no model");
        }
        Path data = r.data();
        Path val = r.recovery().val();
        if (data == null) {
            throw new IllegalArgumentException("--recover-steps needs training text: give --train-data FILE (without it, --calib FILE is used)");
        }
        if (!Files.exists(data)) {
            throw new IllegalArgumentException((r.recovery().data() != null ? "--train-data " : "--calib ") + data
                    + ": does not exist (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        if (val != null && !Files.exists(val)) {
            throw new IllegalArgumentException("--val-data " + val + ": does not exist (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        if (!(r.recovery().valFraction() > 0 && r.recovery().valFraction() < 1) && val == null) {
            throw new IllegalArgumentException("--val-fraction " + r.recovery().valFraction() + ": expected a value in (0, 1)");
        }
        JobDir.check(p.out(), KIND, json(r, teacherHash(r)), p.overwrite(), inputs(r));
        Pruner.checkOutputs(pruneStep(r, JobDir.dirOf(p.out())));
        if (p.planOut() != null) {
            OutputGuard.checkFile(p.planOut(), p.overwrite(), "--plan-out", PruningPlan.FORMAT_PREFIX, p.model(), p.applyPlan(),
                    p.calibration(), p.out(), JobDir.dirOf(p.out()));
        }
    }

    /**
     * Runs (or resumes) the job.
     *
     * @param onStart gets the trainer before training starts (a Ctrl-C handler calls {@link Trainer#requestStop})
     */
    public static Outcome run(Request r, Trainer.Listener listener, Consumer<Trainer<?>> onStart) throws IOException {
        check(r);
        PruneRequest p = r.prune();
        try (OutputLock outLock = OutputLock.acquire(p.out(), "--out")) {
            String teacherHash = teacherHash(r);
            JobDir job = JobDir.open(p.out(), KIND, json(r, teacherHash), p.overwrite(), inputs(r));
            PruneRequest prune = pruneStep(r, job.dir());
            PruneResult pruned = null;
            if (job.resumed() && Files.isRegularFile(prune.out().resolve("config.json"))) {
                prune.progress().message("reusing the pruned model in " + prune.out() + " (same settings)");
            } else {
                pruned = new Pruner().run(prune); // written beside, then renamed: a complete config.json means a complete model
            }
            Recovery.Outcome o;
            try (ModelDir md = ModelDir.open(prune.out())) {
                o = Recovery.train(job, md, p.device(), r.training(), teacherHash, listener, onStart);
            }
            if (o.merged() == null) {
                return new Outcome(pruned, prune.out(), o, null, job.dir()); // interrupted: the checkpoint is saved
            }
            if (p.planOut() != null) {
                // the plan the pruning step wrote beside its model; copied only now, so that a rerun after a kill
                // does not find its own --plan-out and refuse it
                AtomicFile.write(p.planOut(), tmp -> Files.copy(prune.out().resolve(Surgery.PLAN_FILE), tmp));
            }
            job.finish();
            return new Outcome(pruned, prune.out(), o, p.out(), job.dir());
        }
    }

    /** The pruning step: the same request, writing into the job folder ({@code --plan-out} is copied at the end). */
    static PruneRequest pruneStep(Request r, Path jobDir) {
        return r.prune().toBuilder().out(jobDir.resolve("pruned")).planOut(null).overwrite(true).build();
    }

    /** The job's input files and directories, which OUT may not overlap. */
    private static Path[] inputs(Request r) {
        return r.recovery().inputs(r.prune().model(), r.prune().applyPlan(), r.prune().calibration());
    }

    /** The teacher's hash after checking it against the model being pruned (same vocabulary); null without a teacher. */
    private static String teacherHash(Request r) {
        if (r.recovery().distill() == null) {
            return null;
        }
        try (ModelDir md = ModelDir.open(r.prune().model())) {
            return r.recovery().distill().check(r.prune().model(), md.config());
        }
    }

    /** Everything the job's result depends on (not chunk sizes, progress or streaming, which change no number). */
    private static ObjectNode json(Request r, String teacherHash) {
        ObjectMapper m = new ObjectMapper();
        PruneRequest p = r.prune();
        ObjectNode n = m.createObjectNode();
        n.set("prune", p.settingsJson());
        ObjectNode rec = Recovery.trainingJson(n.putObject("recover"), r.training(), teacherHash);
        rec.put("merged_dtype", r.recovery().mergedType() == null ? null : r.recovery().mergedType().name());
        return n;
    }

    private static Path abs(Path p) {
        return p == null ? null : p.toAbsolutePath().normalize();
    }
}
