package dev.lopper.training.job;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.allocation.KeptUnits;
import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import dev.lopper.training.loop.Checkpoints;
import dev.lopper.training.loop.FullModel;
import dev.lopper.training.loop.Gradients;
import dev.lopper.training.loop.LossPass;
import dev.lopper.training.loop.LossTerm;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.loop.TrainingData;
import dev.lopper.training.loop.TrainingMethod;
import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.LoraTrainee;
import dev.lopper.training.lora.Merge;
import dev.lopper.training.method.IterativeCriterion;
import dev.lopper.training.method.Phase;
import dev.lopper.training.method.ScheduleMethod;
import dev.lopper.training.method.StepContext;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * The one schedule engine: prune -> train -> prune ... until the target ratio, for the training-aware methods that
 * prune in steps ({@link ScheduleMethods}: LoRAPrune, Adapt-Pruner) and for any one-shot criterion run iteratively
 * ({@link IterativeCriterion}). The current model lives in memory (fp32, {@link FullModel}): each prune step
 * re-scores it, maps the scores back to the original model's indices (units already removed score -infinity, so
 * they stay removed and count towards the cumulative ratio), allocates the phase's cumulative ratio there, and cuts
 * it by surgery (removing = zeroing, so a removed unit is exactly a masked one); training steps between prunes are
 * LoRA runs on the one {@link Trainer}, merged into it. The disk holds checkpoints only.
 *
 * <p>Files, the one job layout ({@link JobDir}):
 * <pre>
 *   OUT/                              the final model with lopper_plan.json (the plan on the original model's indices)
 *   OUT.job/job.json                  what was asked (a rerun must ask the same to resume)
 *   OUT.job/steps/NNNN/checkpoints/   step N's training checkpoints
 *   OUT.job/steps/NNNN/model/         the model after step N (fp32 HF directory; only the newest step's is kept)
 *   OUT.job/steps/NNNN/done.json      written last, atomically: the step's state (composed plan, method state, curve)
 *   OUT.job/curve.csv, .png           loss, learning rate and parameters over the training steps, the prune steps
 * </pre>
 * Rerunning the same command after a kill at any point continues after the last finished step (an unfinished
 * prune is redone: it is deterministic; an unfinished training phase resumes from its own checkpoint, or restarts
 * when the method learns from training); the result equals an uninterrupted run's ({@code PruneScheduleTest}).
 *
 * <pre>{@code
 * PruneSchedule.Result r = new PruneSchedule().run(request);
 * r.plan();   // on the original model's indices
 * }</pre>
 */
public final class PruneSchedule {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** What a run produced: the final model directory, the composed plan, the curve and the step it resumed after. */
    public record Result(Path model, PruningPlan plan, List<Trainer.Point> curve, int resumedAfter) {
    }

    /** The job of a method that prunes in steps ({@code factory} makes it for a request). */
    public static ScheduleMethods.Job job(Function<ScheduleRequest, ScheduleMethod> factory) {
        return (r, onStart) -> new PruneSchedule().run(r, factory.apply(r), onStart);
    }

    public Result run(ScheduleRequest r) throws IOException {
        return run(r, t -> { });
    }

    /**
     * Runs (or resumes) {@code r}: a registered training-aware method through its job, a criterion iteratively.
     * {@code onStart} gets every trainer before it starts (a Ctrl-C handler calls requestStop).
     */
    public Result run(ScheduleRequest r, Consumer<Trainer<?>> onStart) throws IOException {
        ScheduleMethods.Entry e = ScheduleMethods.get(r.prune().criterion());
        if (e != null) {
            return e.job().run(r, onStart);
        }
        if (!Criteria.names().contains(r.prune().criterion())) {
            throw new IllegalArgumentException("--method " + r.prune().criterion() + ": unknown; expected a criterion "
                    + new java.util.TreeSet<>(Criteria.names()) + " or a training-aware method " + new java.util.TreeSet<>(ScheduleMethods.names()));
        }
        return run(r, new IterativeCriterion(r), onStart);
    }

    /** One progress line per training step ({@code prefix} says where in a schedule it is). */
    static Trainer.Listener progressLine(Progress progress, String prefix) {
        return new Trainer.Listener() {
            @Override
            public void step(Trainer.Point p, int total, double tokensPerSecond, double etaSeconds) {
                progress.message(String.format(Locale.ROOT, "%strain %d/%d loss %.4f lr %.3g, %,d parameters, %.0f tok/s, ETA %.0fs", prefix,
                        p.step(), total, p.trainLoss(), p.lr(), p.params(), tokensPerSecond, etaSeconds));
            }

            @Override
            public void within(int step, int micro, int accumulation, double tokensPerSecond, double etaSeconds) {
                progress.message(String.format(Locale.ROOT, "%strain %d micro-batch %d/%d, %.0f tok/s, ETA %.0fs", prefix, step, micro,
                        accumulation, tokensPerSecond, etaSeconds));
            }

            @Override
            public void validated(int step, double loss) {
                progress.message(String.format(Locale.ROOT, "%sstep %d val_loss %.4f (perplexity %.3f)", prefix, step, loss, Math.exp(loss)));
            }

            @Override
            public void pruned(int step, long before, long after) {
                progress.message(String.format(Locale.ROOT, "%sstep %d: pruned %,d -> %,d parameters", prefix, step, before, after));
            }

            @Override
            public void resumed(int step, Path dir) {
                progress.message(String.format(Locale.ROOT, "%sresuming training from step %d (%s)", prefix, step, dir));
            }
        };
    }

    Result run(ScheduleRequest r, ScheduleMethod method, Consumer<Trainer<?>> onStart) throws IOException {
        Progress progress = r.prune().progress();
        List<Phase> phases = method.phases();
        Path out = r.prune().out();
        StringBuilder line = new StringBuilder("schedule: " + method.name());
        method.settings().forEach((k, v) -> line.append(' ').append(k).append('=').append(v));
        progress.message(line.toString());
        try (ModelDir originalDir = ModelDir.open(r.prune().model())) {
            JobDir job = JobDir.open(out, "schedule", requestJson(r, method), r.prune().overwrite(), r.prune().model(), r.data(), r.val(),
                    r.prune().calibration());
            ModelConfig original = originalDir.config();
            State st = job.resumed() ? restore(job, method, r) : null;
            if (st != null) {
                progress.message(String.format(Locale.ROOT, "resuming after step %d of %d (%s)", st.done, phases.size(), job.dir()));
            } else {
                st = new State(FullModel.load(original, originalDir.checkpoint(), r.prune().device()),
                        PruningPlan.empty().withModelHash(ModelHash.of(r.prune().model())), new ArrayList<>(), 0);
            }
            int resumedAfter = st.done;
            try {
                for (int k = st.done + 1; k <= phases.size(); k++) {
                    st = step(r, method, phases.get(k - 1), k, phases.size(), job, originalDir, st, onStart);
                }
                Curve.write(st.curve, job.dir(), "lopper prune " + method.name() + " " + r.prune().model().getFileName());
                PruningPlan composed = st.plan.result() != null ? st.plan
                        : st.plan.withResult(Allocation.result(original, st.plan.resolve(original), true, true, false, 0, 0));
                PruningPlan plan = AskedRatio.record(composed, r.prune().ratio(), original, () -> String.format(Locale.ROOT,
                        "the allocation's counts (%s), layers kept whole: %s", composed.allocation(), keptWhole(composed, original)), progress);
                writeFinal(st.current, originalDir, out, plan, phases, OutputDtype.resolve(r.outputType(), originalDir, progress));
                job.finish();
                return new Result(out, plan, List.copyOf(st.curve), resumedAfter);
            } finally {
                st.current.close();
            }
        }
    }

    /** The layers a plan leaves whole, e.g. "[0, 7]" ("none" when every layer lost something). */
    private static String keptWhole(PruningPlan plan, ModelConfig original) {
        List<Integer> whole = plan.resolve(original).stream().filter(s -> !s.removed()
                        && s.keptKvGroups().length == original.layer(s.layer()).numKvHeads()
                        && s.keptChannels().length == original.layer(s.layer()).intermediateSize())
                .map(LayerSelection::layer).toList();
        return whole.isEmpty() ? "none" : whole.toString();
    }

    /** Where the run stands: the current model (in memory), the plan so far (original indices), the curve, the last finished step. */
    private record State(FullModel current, PruningPlan plan, List<Trainer.Point> curve, int done) {
    }

    private State step(ScheduleRequest r, ScheduleMethod method, Phase phase, int k, int n, JobDir job, ModelDir originalDir,
                       State st, Consumer<Trainer<?>> onStart) throws IOException {
        Progress progress = r.prune().progress();
        ModelConfig original = originalDir.config();
        Path dir = job.resolve("steps").resolve(String.format(Locale.ROOT, "%04d", k));
        Files.createDirectories(dir);
        FullModel current = st.current;
        PruningPlan plan = st.plan;
        List<Trainer.Point> curve = new ArrayList<>(st.curve);
        int trained = curve.isEmpty() ? 0 : curve.get(curve.size() - 1).step();
        if (phase.pruneTo() != null) {
            StepContext ctx = context(k, current, originalDir, r);
            progress.stage(String.format(Locale.ROOT, "step %d/%d: scoring", k, n));
            Scores scores = method.score(ctx);
            Allocation.Options o = withRatio(method.allocation(original.numLayers()), phase.pruneTo());
            KeptUnits before = KeptUnits.of(original, plan.resolve(original));
            PruningPlan next = Allocation.allocate(StructureGraph.of(original), before.toOriginal(scores), o);
            List<LayerSelection> relative = before.toCurrent(next.resolve(original));
            FullModel cut = current.cut(relative); // surgery on the model in memory
            current.close();
            current = cut;
            method.pruned(relative);
            plan = next.withProvenance(method.name(), null, r.prune().ratio(), next.targets(), o.strategy(), null, r.prune().seed())
                    .withModelHash(st.plan.modelHash());
        }
        long params = Allocation.result(original, plan.resolve(original), true, true, false, 0, 0).paramsAfter();
        // the allocation's own count (its targets and kept layers); 0 before the first prune
        double achieved = plan.result() == null ? 0 : plan.result().achievedRatio();
        progress.message(String.format(Locale.ROOT, "step %d/%d: ratio %.4f (target %s), %,d parameters", k, n, achieved,
                phase.pruneTo() == null ? "-" : String.format(Locale.ROOT, "%.4f", phase.pruneTo()), params));
        Trainer.Point mark = new Trainer.Point(trained, null, null, 0, params, Map.of("prune_step", (double) k, "ratio", achieved));
        curve.add(mark);
        if (phase.trainSteps() > 0) {
            if (r.data() == null) {
                throw new IllegalArgumentException("--method " + method.name() + " trains between prune steps: give --train-data FILE");
            }
            FullModel merged = train(r, method, phase, k, n, dir, current, originalDir, mark, curve, onStart);
            current.close();
            current = merged;
        }
        State next = new State(current, plan, curve, k);
        writeDone(dir, job, next, method, originalDir);
        return next;
    }

    private static StepContext context(int k, FullModel current, ModelDir originalDir, ScheduleRequest r) {
        return new StepContext(k, current.config(), current.source(), originalDir.tokenizer(), originalDir.config(), r.prune().device(),
                r.prune().progress());
    }

    /**
     * Step {@code k}'s LoRA phase on the current model (in memory), checkpoints in the step's folder; returns the
     * model with the adapters merged (fp32: the next step scores and trains on it, and a bf16 merge would round the
     * update away) and adds the phase's rows to {@code curve}, numbered on from the step's prune row {@code mark} and
     * with its parameters and metrics.
     */
    private FullModel train(ScheduleRequest r, ScheduleMethod method, Phase phase, int k, int n, Path dir, FullModel current,
                            ModelDir originalDir, Trainer.Point mark, List<Trainer.Point> curve, Consumer<Trainer<?>> onStart)
            throws IOException {
        int offset = mark.step();
        Path checkpoints = dir.resolve("checkpoints");
        if (method.observesTraining() && Files.exists(checkpoints)) {
            // what the method learned in the interrupted phase is not in the checkpoint: the phase restarts
            AtomicDirectory.deleteTree(checkpoints);
        }
        var o = phaseOptions(r, phase.trainSteps(), k);
        StepContext ctx = context(k, current, originalDir, r);
        TrainingMethod<LoraTrainee> observer = new TrainingMethod<>() {
            @Override
            public String name() {
                return method.name();
            }

            @Override
            public void beforeUpdate(int step, LoraTrainee t, Gradients grads) {
                method.observe(offset + step, t.lora(), grads.list(LoraTrainee.GROUP), ctx);
            }
        };
        TrainingData data = TrainingData.load(r.data(), r.val(), originalDir.tokenizer(), o.windows(), r.valWindows(), o.seqLen(),
                r.valFraction(), o.seed());
        try (LlamaModel lm = LlamaModel.load(current.config(), current.source(), r.prune().device());
             LoraAdapters lora = LoraAdapters.create(current.config(), r.lora(), o.seed(), r.prune().device())) {
            dev.lopper.training.loop.ParamGroup.Rate run = method.runRate(o);
            LossPass pass = LossPass.inMemory(lm, LossTerm.CAUSAL_LM);
            LoraTrainee trainee = run == null ? new LoraTrainee(pass, lora, o)
                    : new LoraTrainee(pass, lora, step -> run.at(offset + step), o.weightDecay());
            Trainer<LoraTrainee> trainer = new Trainer<>(trainee, observer,
                    data, o, checkpoints, progressLine(r.prune().progress(), String.format(Locale.ROOT, "step %d/%d: ", k, n)));
            onStart.accept(trainer);
            Trainer.Result result = trainer.run();
            TrainingInterrupted.ifStopped(result, checkpoints);
            for (Trainer.Point pt : result.history()) {
                if (pt.trainLoss() != null || pt.valLoss() != null) {
                    curve.add(new Trainer.Point(offset + pt.step(), pt.trainLoss(), pt.valLoss(), pt.lr(), mark.params(), mark.metrics()));
                }
            }
            try (NDManager m = NDManager.newBaseManager(r.prune().device())) {
                return FullModel.load(current.config(), Merge.merged(current.source(), lora, m), r.prune().device());
            }
        }
    }

    /**
     * The step's checkpoint: the current model (fp32, as an HF directory), then done.json, written last and
     * atomically (a step without it is redone); the previous step's model is deleted after.
     */
    private static void writeDone(Path dir, JobDir job, State st, ScheduleMethod method, ModelDir originalDir) throws IOException {
        ModelWriter.save(dir.resolve("model"), st.current.config(), st.current.source(), DataType.FLOAT32, originalDir.path(),
                ModelWriter.DEFAULT_MAX_SHARD_BYTES, Map.of("format", "pt"));
        ObjectNode d = JSON.createObjectNode();
        d.put("step", st.done);
        d.set("plan", st.plan.toJson());
        d.set("method_state", method.state());
        d.set("curve", JSON.valueToTree(st.curve));
        dev.lopper.model.io.AtomicFile.writeString(dir.resolve("done.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(d));
        for (int k = 1; k < st.done; k++) { // nothing where a step's model is gone already
            AtomicDirectory.deleteTree(job.resolve("steps").resolve(String.format(Locale.ROOT, "%04d", k)).resolve("model"));
        }
    }

    /** The last finished step's state, its model loaded back into memory (null when no step finished). */
    private static State restore(JobDir job, ScheduleMethod method, ScheduleRequest r) throws IOException {
        Path steps = job.resolve("steps");
        Path last = null;
        if (Files.isDirectory(steps)) {
            try (var s = Files.list(steps)) { // steps/NNNN: the newest in name order
                last = s.filter(p -> Files.isRegularFile(p.resolve("done.json"))).max(Comparator.naturalOrder()).orElse(null);
            }
        }
        if (last == null) {
            return null;
        }
        JsonNode d = JSON.readTree(last.resolve("done.json").toFile());
        PruningPlan plan = PruningPlan.parse(d.get("plan"), last.resolve("done.json"));
        List<Trainer.Point> curve = new ArrayList<>(Arrays.asList(JSON.treeToValue(d.get("curve"), Trainer.Point[].class)));
        if (d.hasNonNull("method_state")) {
            method.restore(d.get("method_state"));
        }
        FullModel current;
        try (ModelDir md = ModelDir.open(last.resolve("model"))) {
            current = FullModel.load(md.config(), md.checkpoint(), r.prune().device());
        }
        return new State(current, plan, curve, d.get("step").asInt());
    }

    /**
     * A training phase's optimizer settings: the request's, for this phase's steps (10% warm-up, validation at the end,
     * a checkpoint every 10% of it) and its own data windows (seed + step).
     */
    static dev.lopper.training.loop.TrainOptions phaseOptions(ScheduleRequest r, int steps, int k) {
        return r.train().withSteps(steps).withWarmup(steps / 10).withEvery(steps, Math.max(1, steps / 10)).withSeed(r.train().seed() + k);
    }

    private static Allocation.Options withRatio(Allocation.Options o, double ratio) {
        return new Allocation.Options(ratio, o.targets(), o.strategy(), o.headUnit(), o.headRatio() == null ? null : ratio,
                o.channelRatio() == null ? null : ratio, o.keepFirst(), o.keepLast(), o.uniformRounding());
    }

    /**
     * The final model to OUT with the composed plan: when no step trained, the original checkpoint cut by the plan
     * (its own dtype, as a one-shot prune writes it); otherwise the trained model in memory (fp32).
     */
    private static void writeFinal(FullModel current, ModelDir originalDir, Path out, PruningPlan plan, List<Phase> phases,
                                   DataType storeAs) throws IOException {
        boolean trained = phases.stream().anyMatch(p -> p.trainSteps() > 0);
        Surgery.Result result;
        if (trained) {
            result = Surgery.apply(current.config(), current.source(), KeptUnits.whole(current.config()).kept());
        } else {
            result = Surgery.apply(originalDir.config(), originalDir.checkpoint(), plan);
            if (!result.config().layers().equals(current.config().layers())) {
                throw new IllegalStateException("the composed plan does not describe the model the steps cut"); // a bug, not bad input
            }
        }
        Surgery.save(result, out, originalDir.path(), plan, storeAs);
    }

    private static ObjectNode requestJson(ScheduleRequest r, ScheduleMethod m) {
        ObjectNode n = JSON.createObjectNode();
        n.put("method", m.name());
        n.set("prune", r.prune().settingsJson());
        n.put("iterations", r.iterations());
        n.put("train_steps_per_step", r.trainStepsPerStep());
        n.put("steps", r.steps());
        JobDir.putData(n, r.data(), r.val(), r.valFraction(), r.valWindows());
        n.set("lora", Checkpoints.tree(r.lora()));
        n.set("train", JSON.valueToTree(r.train()));
        n.set("phases", JSON.valueToTree(m.phases()));
        return n;
    }
}
