package dev.lopper.training.job;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.calibration.gradient.GradientEngine;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.allocation.KeptUnits;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import dev.lopper.training.loop.Checkpoints;
import dev.lopper.training.loop.FullModel;
import dev.lopper.training.loop.FullTrainee;
import dev.lopper.training.loop.LossTerm;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.loop.TrainingData;
import dev.lopper.training.method.FullTrainingMethod;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Consumer;

/**
 * The job of the methods that prune while training every weight ({@code --method efficientllm | bip}): one
 * full-parameter run on the one {@link Trainer} ({@link FullTrainee}: weights and AdamW's moments cut together in
 * memory at the method's prune points), in the one job layout ({@link JobDir}): the final model (fp32, a plain HF
 * directory with {@code lopper_plan.json} on the original model's indices) in {@code OUT}, checkpoints and the curve
 * (loss, learning rate and parameters per step) in {@code OUT.job/}. The same command resumes after a kill to the
 * result of an uninterrupted run.
 *
 * <pre>{@code
 * ScheduleMethods.Job job = PruneWhileTraining.job(EfficientLlm::of);
 * PruneSchedule.Result r = job.run(request, trainer -> { });   // request.prune().criterion() "efficientllm"
 * }</pre>
 */
public final class PruneWhileTraining {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Makes the method for a run of {@code steps} steps removing {@code ratio} of the original model's prunable parameters. */
    @FunctionalInterface
    public interface Factory {
        FullTrainingMethod create(FullModel original, double ratio, int steps);
    }

    private PruneWhileTraining() {
    }

    /** The job of a method made by {@code factory}. */
    public static ScheduleMethods.Job job(Factory factory) {
        return (r, onStart) -> run(r, factory, onStart);
    }

    static PruneSchedule.Result run(ScheduleRequest r, Factory factory, Consumer<Trainer<?>> onStart) throws IOException {
        String name = r.prune().criterion();
        if (r.data() == null) {
            throw new IllegalArgumentException("--method " + name + " trains the whole model: give --train-data FILE");
        }
        if (r.iterations() != null) {
            throw new IllegalArgumentException("--iterative applies to one-shot criteria; --method " + name + " prunes on its own schedule");
        }
        TrainOptions o = r.steps() != null ? r.train().withSteps(r.steps()) : r.train();
        Progress progress = r.prune().progress();
        Path out = r.prune().out();
        try (ModelDir md = ModelDir.open(r.prune().model())) {
            ModelConfig config = md.config();
            GradientEngine.checkSupported(config); // Qwen3's q/k norms: no gradient path
            progress.message(String.format(Locale.ROOT, "%s trains every weight: %s (weights, gradients, 2 AdamW moments, fp32) plus activations",
                    name, mib(FullModel.trainingBytes(config))));
            JobDir job = JobDir.open(out, "prune-while-training", requestJson(r, o), r.prune().overwrite(), r.prune().model(), r.data(), r.val());
            // the trainee closes the model it holds (the original, or the cut one that replaced it); closing twice is harmless
            try (FullModel model = FullModel.load(config, md.checkpoint(), r.prune().device())) {
                FullTrainingMethod method = factory.create(model, r.prune().ratio(), o.steps());
                try (FullTrainee trainee = new FullTrainee(model, o, method::transform, LossTerm.CAUSAL_LM)) {
                    TrainingData data = TrainingData.load(r.data(), r.val(), md.tokenizer(), o.windows() * method.batchesPerStep(),
                            r.valWindows(), o.seqLen(), r.valFraction(), o.seed());
                    Trainer.Result result = job.train(new Trainer<>(trainee, method, data, o, job.checkpoints(), PruneSchedule.progressLine(progress, "")),
                            onStart, h -> withRatio(h, config), "lopper prune --method " + name + " --ratio " + r.prune().ratio() + " "
                                    + r.prune().model().getFileName());
                    TrainingInterrupted.ifStopped(result, job.checkpoints());
                    PruningPlan plan = AskedRatio.record(plan(r, o, md, method, trainee.model().config()), r.prune().ratio(), config,
                            () -> "the method's last cut (" + method.allocation() + " allocation of its own counts)", progress);
                    ModelWriter.save(out, trainee.model().config(), trainee.model().source(), OutputDtype.resolve(r.outputType(), md, progress), md.path(),
                            ModelWriter.DEFAULT_MAX_SHARD_BYTES, Map.of("format", "pt"));
                    plan.save(out.resolve(Surgery.PLAN_FILE));
                    job.finish();
                    return new PruneSchedule.Result(out, plan, withRatio(result.history(), config), result.resumedFrom());
                }
            }
        }
    }

    /** The curve with each step's achieved ratio (of the original model's prunable parameters), as the schedule's. */
    private static List<Trainer.Point> withRatio(List<Trainer.Point> history, ModelConfig original) {
        PruningPlan.Result dense = Allocation.result(original, KeptUnits.whole(original).kept(), true, true, false, 0, 0);
        List<Trainer.Point> out = new ArrayList<>();
        for (Trainer.Point p : history) {
            Map<String, Double> m = new TreeMap<>(p.metrics());
            m.put("ratio", (double) (dense.paramsBefore() - p.params()) / dense.prunableParams());
            out.add(new Trainer.Point(p.step(), p.trainLoss(), p.valLoss(), p.lr(), p.params(), m));
        }
        return out;
    }

    /** The plan of what went (original indices), with the run's provenance; the weights are the trained ones. */
    private static PruningPlan plan(ScheduleRequest r, TrainOptions o, ModelDir md, FullTrainingMethod method, ModelConfig finalConfig) {
        List<LayerSelection> kept = method.kept();
        ObjectNode options = JSON.createObjectNode();
        options.put("training", "full");
        options.put("steps", o.steps());
        options.set("method", method.options());
        PruningPlan base = new PruningPlan(method.name(), options, r.prune().ratio(), List.of("heads", "channels"), method.allocation(),
                new PruningPlan.Calibration(r.data().toString(), o.windows() * method.batchesPerStep(), o.seqLen()),
                o.seed(), ModelHash.of(md.path()), PruningPlan.toolVersionString(), List.of(), List.of(), null, null);
        PruningPlan plan = Allocation.toPlan(md.config(), kept, base)
                .withResult(Allocation.result(md.config(), kept, true, true, false, 0, 0));
        if (!Surgery.apply(md.config(), md.checkpoint(), plan).config().layers().equals(finalConfig.layers())) {
            throw new IllegalStateException("the plan does not describe the trained model's shape"); // a bug, not bad input
        }
        return plan;
    }

    private static ObjectNode requestJson(ScheduleRequest r, TrainOptions o) {
        ObjectNode n = JSON.createObjectNode();
        n.put("model", r.prune().model().toAbsolutePath().toString());
        n.put("method", r.prune().criterion());
        n.put("ratio", r.prune().ratio());
        JobDir.putData(n, r.data(), r.val(), r.valFraction(), r.valWindows());
        n.set("train", Checkpoints.comparable(o));
        return n;
    }

    /** "123.4 MiB" */
    public static String mib(long bytes) {
        return String.format(Locale.ROOT, "%.1f MiB", bytes / (1024.0 * 1024));
    }
}
