package dev.lopper.training.job;

import dev.lopper.training.method.IterativeCriterion;
import dev.lopper.training.method.Phase;
import dev.lopper.training.method.ScheduleMethod;
import dev.lopper.training.job.ScheduleMethods;
import dev.lopper.training.method.StepContext;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.job.Recovery;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.loop.TrainingMethod;
import dev.lopper.training.loop.Gradients;
import dev.lopper.training.lora.LoraTrainee;
import java.util.function.Consumer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * The one schedule engine: prune -> train -> prune ... until the target ratio, for every training-aware method
 * ({@link ScheduleMethods}) and for any one-shot criterion run iteratively ({@link IterativeCriterion}). Each prune
 * step re-scores the CURRENT model (already smaller), maps the scores back to the original model's indices (units
 * already removed score -infinity, so they stay removed and count towards the cumulative ratio), allocates the
 * phase's cumulative ratio there, and cuts the current model by surgery (removing = zeroing, so a removed unit is
 * exactly a masked one). Training steps between prunes are LoRA runs ({@link Recovery}) merged into the model.
 *
 * <p>Files: the final model goes to {@code --out} (a plain HF model with {@code lopper_plan.json}, the plan
 * composed onto the original model's indices, plus {@code schedule.csv}/{@code schedule.png}); the work goes to
 * {@code OUT.schedule/} beside it:
 * <pre>
 *   OUT.schedule/schedule.json         what was asked (a rerun must ask the same to resume)
 *   OUT.schedule/steps/NNNN/pruned/    the model after step N's prune (HF), its relative plan inside
 *   OUT.schedule/steps/NNNN/train/     step N's LoRA run (checkpoints, loss curve, merged model)
 *   OUT.schedule/steps/NNNN/done.json  written last, atomically: the step's checkpoint (composed plan, method state, curve)
 *   OUT.schedule/schedule.csv|png      loss and parameter count over training steps
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
    public static final String REQUEST_FILE = "schedule.json";
    private static final ObjectMapper JSON = new ObjectMapper();

    /** What a run produced: the final model directory, the composed plan and the curve rows. */
    public record Result(Path model, PruningPlan plan, List<ScheduleCurve.Row> curve, int resumedAfter) {
    }

    /** Where the work of a run writing {@code out} goes. */
    public static Path workDir(Path out) {
        Path abs = out.toAbsolutePath().normalize();
        return abs.resolveSibling(abs.getFileName() + ".schedule");
    }

    public Result run(ScheduleRequest r) throws IOException {
        return run(r, t -> { });
    }

    /** As above; {@code onStart} gets every trainer before it starts (a Ctrl-C handler calls requestStop). */
    public Result run(ScheduleRequest r, Consumer<Trainer<?>> onStart) throws IOException {
        if (FullTrainingSchedule.handles(r.prune().criterion())) {
            return FullTrainingSchedule.run(r, onStart); // efficientllm, bip: they prune inside one full-parameter training run
        }
        if (CompressoSchedule.handles(r.prune().criterion())) {
            return CompressoSchedule.run(r, onStart); // masks learned with LoRA in one run, then surgery
        }
        Progress progress = r.prune().progress();
        ScheduleMethod method = ScheduleMethods.create(r);
        List<Phase> phases = method.phases();
        Path out = r.prune().out();
        Path work = workDir(out);
        ObjectNode asked = requestJson(r, method);
        boolean resume = prepare(r, work, asked);
        StringBuilder line = new StringBuilder("schedule: " + method.name());
        method.settings().forEach((k, v) -> line.append(' ').append(k).append('=').append(v));
        progress.message(line.toString());
        try (ModelDir originalDir = ModelDir.open(r.prune().model())) {
            ModelConfig original = originalDir.config();
            String hash = ModelHash.of(r.prune().model());
            State st = new State(r.prune().model(), PruningPlan.empty().withModelHash(hash), new ArrayList<>(), 0);
            if (resume) {
                st = restore(work, original, method, st);
                if (st.done > 0) {
                    progress.message(String.format(Locale.ROOT, "resuming after step %d of %d (%s)", st.done, phases.size(), work));
                }
            }
            int resumedAfter = st.done;
            for (int k = st.done + 1; k <= phases.size(); k++) {
                st = step(r, method, phases.get(k - 1), k, phases.size(), work, original, st, onStart);
            }
            ScheduleCurve.writeCsv(st.curve, work.resolve("schedule.csv"));
            ScheduleCurve.writePng(st.curve, work.resolve("schedule.png"), "lopper prune " + method.name() + " " + r.prune().model().getFileName());
            PruningPlan plan = st.plan.result() != null ? st.plan
                    : st.plan.withResult(Allocation.result(original, st.plan.resolve(original), true, true, false, 0, 0));
            writeFinal(st.current, out, plan, work);
            return new Result(out, plan, List.copyOf(st.curve), resumedAfter);
        }
    }

    /** Where the run stands: the current model, the plan so far (original indices), the curve, the last finished step. */
    private record State(Path current, PruningPlan plan, List<ScheduleCurve.Row> curve, int done) {
    }

    private State step(ScheduleRequest r, ScheduleMethod method, Phase phase, int k, int n, Path work, ModelConfig original,
                       State st, Consumer<Trainer<?>> onStart) throws IOException {
        Progress progress = r.prune().progress();
        Path dir = work.resolve("steps").resolve(String.format(Locale.ROOT, "%04d", k));
        Files.createDirectories(dir);
        Path current = st.current;
        PruningPlan plan = st.plan;
        List<ScheduleCurve.Row> curve = new ArrayList<>(st.curve);
        int trained = curve.isEmpty() ? 0 : curve.get(curve.size() - 1).trainStep();
        if (phase.pruneTo() != null) {
            Path pruned = dir.resolve("pruned");
            if (Files.exists(pruned)) {
                AtomicDirectory.deleteTree(pruned); // a kill left it unfinished (done.json is missing): redo, it is deterministic
            }
            try (ModelDir md = ModelDir.open(current)) {
                StepContext ctx = new StepContext(k, md, current, original, r.prune().device(), r.prune().seed(), progress);
                progress.stage(String.format(Locale.ROOT, "step %d/%d: scoring", k, n));
                Scores scores = method.score(ctx);
                Allocation.Options o = withRatio(method.allocation(original.numLayers()), phase.pruneTo());
                List<LayerSelection> before = plan.resolve(original);
                PruningPlan next = Allocation.allocate(StructureGraph.of(original), toOriginal(scores, before, original), o);
                List<LayerSelection> after = next.resolve(original);
                List<LayerSelection> relative = relative(before, after);
                PruningPlan stepPlan = Allocation.toPlan(md.config(), relative, PruningPlan.empty())
                        .withProvenance(method.name(), null, phase.pruneTo(), List.of("heads", "channels"), o.strategy(), null,
                                r.prune().seed());
                Surgery.save(Surgery.apply(md.config(), md.checkpoint(), relative), pruned, current, stepPlan);
                method.pruned(relative);
                plan = next.withProvenance(method.name(), null, r.prune().ratio(), next.targets(), o.strategy(), null, r.prune().seed())
                        .withModelHash(st.plan.modelHash());
                current = pruned;
            }
        }
        long params = Allocation.result(original, plan.resolve(original), true, true, false, 0, 0).paramsAfter();
        // the allocation's own count (its targets and kept layers); 0 before the first prune
        double achieved = plan.result() == null ? 0 : plan.result().achievedRatio();
        progress.message(String.format(Locale.ROOT, "step %d/%d: ratio %.4f (target %s), %,d parameters", k, n, achieved,
                phase.pruneTo() == null ? "-" : String.format(Locale.ROOT, "%.4f", phase.pruneTo()), params));
        curve.add(new ScheduleCurve.Row(k, trained, params, achieved, null, null));
        if (phase.trainSteps() > 0) {
            if (r.data() == null) {
                throw new IllegalArgumentException("--method " + method.name() + " trains between prune steps: give --train-data FILE");
            }
            Path train = dir.resolve("train");
            Recovery.Request rr = new Recovery.Request(current, r.data(), r.val(), train, r.lora(),
                    phaseOptions(r, phase.trainSteps(), k), 0.05, r.valWindows(),
                    // merged in fp32: the next step scores and trains on it, and a bf16 merge would round the update away
                    r.prune().device(), ai.djl.ndarray.types.DataType.FLOAT32, method.observesTraining(), false);
            try (ModelDir md = ModelDir.open(current)) {
                StepContext ctx = new StepContext(k, md, current, original, r.prune().device(), r.prune().seed(), progress);
                int offset = trained;
                long p = params;
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
                Recovery.Outcome o = Recovery.run(rr, observer, new Trainer.Listener() {
                    @Override
                    public void step(Trainer.Point pt, int total, double tokensPerSecond, double etaSeconds) {
                        progress.message(String.format(Locale.ROOT, "step %d/%d: train %d/%d loss %.4f, %,d parameters, ETA %.0fs", k, n,
                                pt.step(), total, pt.trainLoss(), p, etaSeconds));
                    }
                }, onStart);
                if (o.merged() == null) {
                    throw new IOException("training of step " + k + " was interrupted; run the same command again to resume");
                }
                for (Trainer.Point pt : o.train().history()) {
                    if (pt.trainLoss() != null || pt.valLoss() != null) {
                        curve.add(new ScheduleCurve.Row(k, offset + pt.step(), params, achieved, pt.trainLoss(), pt.valLoss()));
                    }
                }
                current = o.merged();
            }
        }
        State next = new State(current, plan, curve, k);
        writeDone(dir, work, next, method);
        return next;
    }

    /** The step's checkpoint, written last and atomically: a step without it is redone. */
    private static void writeDone(Path dir, Path work, State st, ScheduleMethod method) throws IOException {
        ObjectNode d = JSON.createObjectNode();
        d.put("step", st.done);
        d.put("model", work.relativize(st.current.toAbsolutePath().normalize()).toString());
        d.set("plan", st.plan.toJson());
        d.set("method_state", method.state());
        d.set("curve", JSON.valueToTree(st.curve));
        write(dir.resolve("done.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(d));
    }

    private static State restore(Path work, ModelConfig original, ScheduleMethod method, State fresh) throws IOException {
        Path steps = work.resolve("steps");
        if (!Files.isDirectory(steps)) {
            return fresh;
        }
        Path last = null;
        try (var s = Files.list(steps)) {
            for (Path p : s.sorted().toList()) {
                if (Files.isRegularFile(p.resolve("done.json"))) {
                    last = p;
                }
            }
        }
        if (last == null) {
            return fresh;
        }
        JsonNode d = JSON.readTree(last.resolve("done.json").toFile());
        PruningPlan plan = PruningPlan.parse(d.get("plan"), last.resolve("done.json"));
        List<ScheduleCurve.Row> curve = new ArrayList<>(Arrays.asList(JSON.treeToValue(d.get("curve"), ScheduleCurve.Row[].class)));
        if (d.hasNonNull("method_state")) {
            method.restore(d.get("method_state"));
        }
        String model = d.get("model").asText();
        Path current = model.isEmpty() ? fresh.current : work.resolve(model);
        if (model.startsWith("..")) {
            current = work.resolve(model).normalize();
        }
        return new State(current, plan, curve, d.get("step").asInt());
    }

    /** Scores of the current model on the original indices: units already removed get -infinity. */
    static Scores toOriginal(Scores s, List<LayerSelection> kept, ModelConfig original) {
        int n = original.numLayers();
        double[][] kv = s.kvGroups() == null ? null : new double[n][];
        double[][] qh = s.queryHeads() == null ? null : new double[n][];
        double[][] ch = s.channels() == null ? null : new double[n][];
        for (int l = 0; l < n; l++) {
            LayerSelection k = kept.get(l);
            if (kv != null) {
                kv[l] = spread(s.kvGroups()[l], k.keptKvGroups(), original.layer(l).numKvHeads());
            }
            if (qh != null) {
                qh[l] = spread(s.queryHeads()[l], k.keptHeads(), original.layer(l).numHeads());
            }
            if (ch != null) {
                ch[l] = spread(s.channels()[l], k.keptChannels(), original.layer(l).intermediateSize());
            }
        }
        // layer scores (Adapt-Pruner's layer importance) index layers, which scheduled pruning never removes
        return new Scores(s.criterion(), s.comparableAcrossLayers(), s.headUnit(), kv, qh, ch, s.layers(), s.afterSurgery());
    }

    private static double[] spread(double[] current, int[] kept, int count) {
        double[] out = new double[count];
        Arrays.fill(out, Double.NEGATIVE_INFINITY);
        for (int j = 0; j < kept.length; j++) {
            out[kept[j]] = current[j];
        }
        return out;
    }

    /** What {@code after} keeps, in the indices of the model {@code before} left (layer for layer; no layer removal). */
    static List<LayerSelection> relative(List<LayerSelection> before, List<LayerSelection> after) {
        List<LayerSelection> out = new ArrayList<>();
        for (int l = 0; l < before.size(); l++) {
            LayerSelection b = before.get(l);
            LayerSelection a = after.get(l);
            out.add(new LayerSelection(l, false, positions(b.keptKvGroups(), a.keptKvGroups(), l),
                    positions(b.keptHeads(), a.keptHeads(), l), positions(b.keptChannels(), a.keptChannels(), l)));
        }
        return out;
    }

    private static int[] positions(int[] before, int[] after, int layer) {
        int[] out = new int[after.length];
        for (int i = 0; i < after.length; i++) {
            int j = Arrays.binarySearch(before, after[i]);
            if (j < 0) {
                // cannot happen with -infinity scores and a strategy that removes the lowest first
                throw new IllegalStateException("layer " + layer + ": unit " + after[i] + " was removed earlier but is kept now");
            }
            out[i] = j;
        }
        return out;
    }

    /**
     * A training phase's optimizer settings: the request's, for this phase's steps (10% warm-up, validation at the end,
     * a checkpoint every 10% of it) and its own data windows (seed + step).
     */
    static dev.lopper.training.loop.TrainOptions phaseOptions(ScheduleRequest r, int steps, int k) {
        return r.train().withSteps(steps).withWarmup(steps / 10).withEvalEvery(steps)
                .withCheckpointEvery(Math.max(1, steps / 10)).withSeed(r.train().seed() + k);
    }

    private static Allocation.Options withRatio(Allocation.Options o, double ratio) {
        return new Allocation.Options(ratio, o.targets(), o.strategy(), o.headUnit(), o.headRatio() == null ? null : ratio,
                o.channelRatio() == null ? null : ratio, o.keepFirst(), o.keepLast(), o.uniformRounding());
    }

    /** The final model: the current one copied to OUT (streamed, atomically) with the composed plan and the curves. */
    private static void writeFinal(Path current, Path out, PruningPlan plan, Path work) throws IOException {
        try (ModelDir md = ModelDir.open(current)) {
            List<LayerSelection> whole = new ArrayList<>();
            for (int l = 0; l < md.config().numLayers(); l++) {
                whole.add(LayerSelection.whole(l, md.config().layer(l)));
            }
            Surgery.save(Surgery.apply(md.config(), md.checkpoint(), whole), out, current, plan);
        }
        for (String f : new String[] {"schedule.csv", "schedule.png"}) {
            Files.copy(work.resolve(f), out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /** Resume when the work directory holds the same request; otherwise check both outputs and start afresh. */
    private static boolean prepare(ScheduleRequest r, Path work, ObjectNode asked) throws IOException {
        Path out = r.prune().out();
        Path[] inputs = {r.prune().model(), r.data(), r.val(), r.prune().calibration()};
        Path[] given = Arrays.stream(inputs).filter(java.util.Objects::nonNull).toArray(Path[]::new);
        OutputGuard.checkDirectory(out, r.prune().overwrite() || isOurs(work), "--out", given);
        if (!r.prune().overwrite() && isOurs(work)) {
            JsonNode saved = JSON.readTree(work.resolve(REQUEST_FILE).toFile());
            // compared as written: a number read back may be an int where a long was put
            if (!saved.equals(JSON.readTree(JSON.writeValueAsString(asked)))) {
                throw new IllegalArgumentException(work + ": holds a scheduled prune asked with other settings (" + saved
                        + "); run the same command to resume it, or pass --overwrite to start over");
            }
            return true;
        }
        OutputGuard.checkDirectory(work, r.prune().overwrite(), "--out (its work directory)", given);
        Path tmp = AtomicDirectory.createTemp(work);
        try {
            OutputGuard.writeMarker(tmp, "schedule");
            write(tmp.resolve(REQUEST_FILE), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(asked));
            AtomicDirectory.replace(tmp, work);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
        return false;
    }

    private static boolean isOurs(Path work) {
        return OutputGuard.isLopperOutput(work) && Files.isRegularFile(work.resolve(REQUEST_FILE));
    }

    private static ObjectNode requestJson(ScheduleRequest r, ScheduleMethod m) {
        ObjectNode n = JSON.createObjectNode();
        n.put("model", r.prune().model().toAbsolutePath().toString());
        n.put("method", m.name());
        n.set("options", JSON.valueToTree(r.prune().criterionOptions()));
        n.put("ratio", r.prune().ratio());
        n.put("targets", String.join(",", new java.util.TreeSet<>(r.prune().targets()))); // sets iterate in a per-JVM order
        n.put("allocation", r.prune().allocation());
        n.put("calibration", r.prune().calibration() == null ? null : r.prune().calibration().toAbsolutePath().toString());
        n.put("samples", r.prune().samples());
        n.put("seq_len", r.prune().seqLen());
        n.put("seed", r.prune().seed());
        n.put("iterations", r.iterations());
        n.put("train_steps_per_step", r.trainStepsPerStep());
        n.put("steps", r.steps());
        n.put("data", r.data() == null ? null : r.data().toAbsolutePath().toString());
        n.put("val", r.val() == null ? null : r.val().toAbsolutePath().toString());
        n.set("lora", JSON.valueToTree(new Object[] {r.lora().rank(), r.lora().alpha(), r.lora().dropout(), r.lora().orderedTargets()}));
        n.set("train", JSON.valueToTree(r.train()));
        n.set("phases", JSON.valueToTree(m.phases()));
        return n;
    }

    private static void write(Path file, String text) throws IOException {
        Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
        Files.writeString(tmp, text, StandardCharsets.UTF_8);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
