package dev.lopper.pruning;

import ai.djl.ndarray.NDManager;
import dev.lopper.calibration.CalibrationData;
import dev.lopper.calibration.CalibrationEngine;
import dev.lopper.calibration.gradient.GradientEngine;
import dev.lopper.model.ModelDir;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.io.OutputLock;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.allocation.LayerImportance;
import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.pruning.criteria.Criterion;
import dev.lopper.pruning.criteria.Defaults;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.criteria.ScoringContext;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.PostSurgery;
import dev.lopper.pruning.surgery.Surgery;

import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Runs a whole pruning job from a {@link PruneRequest}: load, calibrate, score, allocate, plan, surgery, the
 * criterion's step after surgery, save. It knows no criterion or allocation by name: the criterion declares
 * what it needs and its paper's defaults, its scores carry the step after surgery. It never prints; progress goes
 * to the request's {@link Progress}. Recovery, sweeps and iterative schedules call this class.
 *
 * <pre>{@code
 * PruneResult r = new Pruner().run(PruneRequest.builder(Path.of("fixtures/lopper-tiny"))
 *         .criterion("flap").ratio(0.2).calibration(Path.of("fixtures/text/kjv-train.txt"))
 *         .out(Path.of("work/pruned")).build());
 * }</pre>
 */
public final class Pruner {

    /**
     * Runs {@code request}: checks outputs before any work, claims them (a second run writing the same outputs
     * fails at its start), opens the model, checks free space, prunes, writes what was asked.
     */
    public PruneResult run(PruneRequest request) throws IOException {
        checkOutputs(request);
        try (OutputLock outLock = request.out() == null ? null : OutputLock.acquire(request.out(), "--out");
             OutputLock planLock = request.planOut() == null ? null : OutputLock.acquire(request.planOut(), "--plan-out");
             ModelDir md = ModelDir.open(request.model()); NDManager manager = NDManager.newBaseManager()) {
            if (request.out() != null) {
                // the pruned model is smaller than its input: the input's size is a safe bound, known before any work
                OutputGuard.checkFreeSpace(request.out(), md.checkpoint().dataBytes(), "--out");
            }
            return run(md, request, manager);
        }
    }

    /**
     * Runs {@code request} on an open model; new tensors (compensation biases) belong to {@code manager}, so the
     * result's surgery tensors stay readable while {@code md} and {@code manager} are open. Outputs are not
     * checked here (see {@link #checkOutputs}).
     */
    public PruneResult run(ModelDir md, PruneRequest request, NDManager manager) throws IOException {
        long start = System.nanoTime();
        Progress progress = request.progress();
        ModelConfig config = md.config();
        String hash = ModelHash.of(request.model());
        Job job = request.applyPlan() != null ? loadPlan(request, config, hash) : score(md, request, config, hash);
        List<LayerSelection> sel = job.plan.resolve(config);
        Surgery.Result surgery = null;
        long extraParams = 0;
        if (request.out() != null) {
            progress.stage("surgery");
            boolean rescale = job.plan.hidden() != null && job.plan.hidden().rescale();
            surgery = job.afterSurgery.apply(config, md.checkpoint(),
                    Surgery.apply(config, md.checkpoint(), sel, job.plan.keptHidden(config), rescale), manager);
            extraParams = biasParams(surgery.config());
            progress.stage("save");
            Surgery.save(surgery, request.out(), request.model(), job.plan);
        }
        if (request.planOut() != null) {
            job.plan.save(request.planOut());
        }
        if (job.resumeDir != null) {
            dev.lopper.calibration.LayerCheckpoint.clear(job.resumeDir); // the job is done: its checkpoints go
        }
        CalibrationEngine.Result cal = job.calibration;
        RunStats stats = new RunStats((System.nanoTime() - start) / 1e9, cal == null ? 0 : cal.tokens(),
                cal == null ? 0 : cal.seconds(), cal == null ? 0 : cal.layers(), RunStats.peakRss(), job.plan.result(),
                job.afterSurgery.description(), extraParams);
        return new PruneResult(job.plan, sel, surgery, job.settings, stats);
    }

    /**
     * Where this job's calibration checkpoints go (under the calibration cache, next to its "calibration" folder):
     * one folder per job, named by a hash of everything its statistics depend on, so that running the same command
     * again after a kill resumes after the last finished layer, and any other job starts afresh.
     */
    private static java.nio.file.Path resumeDir(String modelHash, Criterion criterion, Allocation.Options alloc,
                                                PruningPlan.Calibration calib, PruneRequest r) {
        java.nio.file.Path cache = dev.lopper.calibration.CalibrationData.defaultCacheDir();
        if (cache == null) {
            return null;
        }
        String job = modelHash + "|" + criterion.name() + "|" + criterion.options() + "|" + alloc + "|" + calib + "|"
                + r.seed() + "|" + r.chunkTokens() + "|" + r.device();
        try {
            byte[] d = java.security.MessageDigest.getInstance("SHA-256").digest(job.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            return cache.resolveSibling("resume").resolve(java.util.HexFormat.of().formatHex(d, 0, 12));
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Fails before any work when an output would destroy something Lopper did not write (OutputGuard). */
    public static void checkOutputs(PruneRequest r) throws IOException {
        if (r.out() == null && r.planOut() == null) {
            throw new IllegalArgumentException("nothing to write: give --out DIR (the pruned model) and/or --plan-out FILE");
        }
        if (r.out() != null) {
            OutputGuard.checkDirectory(r.out(), r.overwrite(), "--out", r.model(), r.applyPlan(), r.calibration());
        }
        if (r.planOut() != null) {
            OutputGuard.checkFile(r.planOut(), r.overwrite(), "--plan-out", PruningPlan.FORMAT_PREFIX, r.model(), r.applyPlan(),
                    r.calibration(), r.out());
        }
    }

    private record Job(PruningPlan plan, PruneSettings settings, PostSurgery afterSurgery, CalibrationEngine.Result calibration,
                       java.nio.file.Path resumeDir) {
    }

    private static Job loadPlan(PruneRequest r, ModelConfig config, String hash) {
        if (r.ratio() != null) {
            throw new IllegalArgumentException("--ratio has no effect with --apply-plan (the plan says what to cut)");
        }
        PruningPlan plan = PruningPlan.load(r.applyPlan());
        if (r.hiddenNorm() != null) {
            throw new IllegalArgumentException("--hidden-norm has no effect with --apply-plan (the plan's 'hidden.norm' says it)");
        }
        try {
            plan.checkModel(hash);
            plan.validate(config);
        } catch (IllegalArgumentException e) {
            // validation speaks of "plan: ..."; the user should see which file
            throw new IllegalArgumentException(e.getMessage().replaceFirst("^plan: ", r.applyPlan() + ": "), e);
        }
        plan = plan.withModelHash(hash).withResult(Allocation.result(config, plan));
        Map<String, PruneSettings.Setting> s = new LinkedHashMap<>();
        s.put("criterion", new PruneSettings.Setting(plan.criterion(), "plan"));
        s.put("plan", new PruneSettings.Setting(r.applyPlan().toString(), "user"));
        // compensation needs the calibration means, which a plan does not carry
        return new Job(plan, new PruneSettings(s, null), PostSurgery.NONE, null, null);
    }

    /** @param hash the model's hash, keying calibration's per-layer resume; null: no resume (an in-memory model) */
    private static Scored scores(TensorSource weights, java.util.function.Supplier<Tokenizer> tokenizer, PruneRequest r,
                                 ModelConfig config, String hash, boolean allocatedLater) throws IOException {
        if (r.ratio() == null) {
            throw new IllegalArgumentException("--ratio is required (the fraction of prunable parameters to remove, in [0, 1)), or give --apply-plan FILE");
        }
        Criterion criterion = Criteria.create(r.criterion(), r.criterionOptions());
        if (r.hiddenNorm() != null && !r.targets().contains("hidden")) {
            throw new IllegalArgumentException("--hidden-norm applies to --targets hidden only");
        }
        Defaults d = criterion.defaults(config);
        Map<String, PruneSettings.Setting> s = new LinkedHashMap<>();
        s.put("criterion", new PruneSettings.Setting(criterion.name(), "user"));
        String allocation = pick(s, "allocation", r.allocation(), d.allocation());
        StructureGraph.Kind unit = pick(s, "head_unit", r.headUnit(), d.headUnit());
        int keepFirst = pick(s, "keep_first", r.keepFirst(), d.keepFirst());
        int keepLast = pick(s, "keep_last", r.keepLast(), d.keepLast());
        String counting = pick(s, "counting", r.uniformRounding(), d.counting());
        if (r.targets().contains("hidden")) {
            pick(s, "hidden_norm", r.hiddenNorm(), PruningPlan.NORM_KEEP); // Minitron slices the norm weights as they are
        }
        Allocation.Options alloc = new Allocation.Options(r.ratio(), r.targets(), allocation, unit, r.headRatio(),
                r.channelRatio(), keepFirst, keepLast, counting);
        checkPairing(criterion, alloc);
        if (allocatedLater && criterion.prunesWhileScoring(alloc)) {
            // the sequential order prunes each layer while scoring the next, at its own ratio: a caller that allocates
            // the scores itself (a schedule's cumulative ratio on the original model) could not re-allocate that
            throw new IllegalArgumentException("--method " + criterion.name() + " prunes while it scores in its sequential order: "
                    + "scheduled pruning needs --wanda-order dense (scores of the dense order, allocated by the schedule)");
        }
        if (criterion.needs() == Criterion.Need.GRADIENTS) {
            // before calibration data or any layer is read: a family the backward pass cannot follow fails here
            GradientEngine.checkSupported(config);
        }
        long[][] windows = null;
        PruningPlan.Calibration calibInfo = null;
        boolean layerImportance = Allocation.strategy(allocation).needsLayerImportance();
        if (criterion.needsCalibration() || layerImportance) {
            if (r.calibration() == null) {
                throw new IllegalArgumentException(criterion.needsCalibration()
                        ? "--method " + criterion.name() + " needs calibration data: give --calib FILE (text, .jsonl or a directory)"
                        : "--allocation " + allocation + " measures each layer's importance on calibration data: give --calib FILE");
            }
            // a criterion without calibration (magnitude) has no window defaults: the layer-importance pass's
            int n = pick(s, "samples", r.samples(), d.samples() > 0 ? d.samples() : LayerImportance.DEFAULT_SAMPLES);
            int len = pick(s, "seq_len", r.seqLen(), d.seqLen() > 0 ? d.seqLen() : LayerImportance.DEFAULT_SEQ_LEN);
            r.progress().message(settingsLine(criterion, s));
            r.progress().stage("calibration data");
            windows = CalibrationData.load(r.calibration(), tokenizer.get(), n, len, r.seed(), r.calibField(),
                    CalibrationData.defaultCacheDir()).windows();
            calibInfo = new PruningPlan.Calibration(r.calibration().toString(), n, len);
        } else if (r.calibration() != null || r.samples() != null || r.seqLen() != null) {
            throw new IllegalArgumentException("--calib/--samples/--seq-len: --method " + criterion.name() + " uses no calibration data");
        } else {
            r.progress().message(settingsLine(criterion, s));
        }
        r.progress().stage("scoring");
        CalibrationRecorder calibrationRecorder = new CalibrationRecorder(r.progress());
        java.nio.file.Path resumeDir = windows == null || hash == null ? null : resumeDir(hash, criterion, alloc, calibInfo, r);
        ScoringContext ctx = new ScoringContext(config, weights, StructureGraph.of(config), r.device(), windows,
                calibInfo, r.seed(), r.progress()::message, calibrationRecorder, alloc, r.chunkTokens(), resumeDir);
        Scores scores = criterion.score(ctx);
        if (layerImportance) {
            r.progress().stage("layer importance");
            scores = scores.withLayers(LayerImportance.measure(config, weights, r.device(), windows, r.chunkTokens(), r.progress()));
        }
        PruneSettings settings = new PruneSettings(withOptions(s, criterion), d.source());
        return new Scored(criterion, scores, alloc, settings, calibInfo, calibrationRecorder.result(), resumeDir);
    }

    /**
     * A criterion's scores of one model, before allocation, with the allocation options and settings the request
     * resolved to (paper defaults filled in). The schedule engine ({@code dev.lopper.training.job}) scores the
     * current, already pruned model this way and allocates on the original model's indices itself.
     */
    public record Scored(Criterion criterion, Scores scores, Allocation.Options allocation, PruneSettings settings,
                         PruningPlan.Calibration calibration, CalibrationEngine.Result calibrationRun, java.nio.file.Path resumeDir) {
    }

    /**
     * Scores the model of {@code r} (open as {@code md}) without allocating or writing anything: calibration data
     * and settings exactly as {@link #run} would use them.
     */
    public static Scored scoreOnly(ModelDir md, PruneRequest r) throws IOException {
        if (r.ratio() == null) {
            throw new IllegalArgumentException("--ratio is required (the fraction of prunable parameters to remove, in [0, 1)), or give --apply-plan FILE");
        }
        return scores(md.checkpoint(), md::tokenizer, r, md.config(), ModelHash.of(r.model()), true);
    }

    /**
     * Scores a model held in memory ({@code weights} under {@code config}: a schedule's current model), with the
     * calibration text tokenized by {@code tokenizer}: as {@link #scoreOnly(ModelDir, PruneRequest)}, without a
     * per-layer calibration resume ({@code r.model()} is only the model's name).
     */
    public static Scored scoreOnly(ModelConfig config, TensorSource weights, Tokenizer tokenizer, PruneRequest r) throws IOException {
        if (r.ratio() == null) {
            throw new IllegalArgumentException("--ratio is required (the fraction of prunable parameters to remove, in [0, 1)), or give --apply-plan FILE");
        }
        return scores(weights, () -> tokenizer, r, config, null, true);
    }

    private static Job score(ModelDir md, PruneRequest r, ModelConfig config, String hash) throws IOException {
        Scored sc = scores(md.checkpoint(), md::tokenizer, r, config, hash, false);
        r.progress().stage("allocation");
        PruningPlan plan = Allocation.allocate(StructureGraph.of(config), sc.scores(), sc.allocation());
        if (plan.hidden() != null) {
            plan = plan.withHidden(new PruningPlan.HiddenPlan(plan.hidden().keptChannels(), null,
                    r.hiddenNorm() == null ? PruningPlan.NORM_KEEP : r.hiddenNorm()));
        }
        Criterion criterion = sc.criterion();
        plan = plan.withProvenance(criterion.name(), criterion.options(), r.ratio(),
                        PruningPlan.TARGETS.stream().filter(r.targets()::contains).toList(), sc.allocation().strategy(),
                        sc.calibration(), r.seed())
                .withModelHash(hash).withSettings(sc.settings().toJson());
        if (plan.result() != null && plan.result().shortfall() != null) {
            r.progress().message("warning: " + plan.result().shortfall()); // never less (or more) than asked in silence
        }
        return new Job(plan, sc.settings(), sc.scores().afterSurgery(), sc.calibrationRun(), sc.resumeDir());
    }

    /** Passes calibration progress on and keeps its totals (tokens per layer, time, layers) for {@link RunStats}. */
    private static final class CalibrationRecorder implements Progress {
        private final Progress next;
        private long tokens;
        private double seconds;
        private int layers;

        CalibrationRecorder(Progress next) {
            this.next = next;
        }

        @Override
        public void stage(String name) {
            next.stage(name);
        }

        @Override
        public void message(String line) {
            next.message(line);
        }

        @Override
        public void update(int layer, int total, long done, long all, double layerSeconds, double elapsedSeconds) {
            next.update(layer, total, done, all, layerSeconds, elapsedSeconds);
        }

        @Override
        public void layerDone(int layer, int total, long layerTokens, double layerSeconds, double elapsedSeconds) {
            tokens = layerTokens;
            seconds = elapsedSeconds;
            layers++;
            next.layerDone(layer, total, layerTokens, layerSeconds, elapsedSeconds);
        }

        CalibrationEngine.Result result() {
            return layers == 0 ? null : new CalibrationEngine.Result(tokens, layers, seconds, 0);
        }
    }

    /** Fails before any calibration pass when the criterion and the allocation cannot go together. */
    private static void checkPairing(Criterion criterion, Allocation.Options alloc) {
        Allocation.Strategy strategy = Allocation.strategy(alloc.strategy());
        if (strategy.needsComparableScores() && !criterion.comparableAcrossLayers()) {
            throw new IllegalArgumentException("--allocation " + alloc.strategy() + " needs scores comparable across layers, and "
                    + criterion.name() + "'s are not; use --allocation uniform or adaptive (which standardizes them per layer)");
        }
        criterion.check(alloc);
    }

    /** The user's value when given, else the paper's; records which. */
    private static <T> T pick(Map<String, PruneSettings.Setting> s, String name, T user, T paper) {
        T v = user != null ? user : paper;
        s.put(name, new PruneSettings.Setting(v instanceof StructureGraph.Kind k ? headUnitName(k) : v, user != null ? "user" : "paper"));
        return v;
    }

    private static Map<String, PruneSettings.Setting> withOptions(Map<String, PruneSettings.Setting> s, Criterion c) {
        Map<String, PruneSettings.Setting> out = new LinkedHashMap<>();
        out.put("criterion", s.get("criterion"));
        if (c.options() != null) {
            out.put("options", new PruneSettings.Setting(c.options(), "paper+user"));
        }
        s.forEach(out::putIfAbsent);
        return out;
    }

    private static String settingsLine(Criterion c, Map<String, PruneSettings.Setting> s) {
        StringBuilder b = new StringBuilder("settings:");
        s.forEach((k, v) -> b.append(String.format(Locale.ROOT, " %s=%s (%s)", k, v.value(), v.from())));
        if (c.options() != null) {
            // the criterion's own knobs (e.g. LLM-Pruner's taylor/grouping), its paper's defaults unless given
            b.append(" options=").append(c.options());
        }
        return b.toString();
    }

    /** "kv-group" or "query-head", the CLI spelling. */
    public static String headUnitName(StructureGraph.Kind k) {
        return k == StructureGraph.Kind.QUERY_HEAD ? "query-head" : "kv-group";
    }

    /** Parameters of o_proj/down_proj biases in {@code c} (FLAP's compensation biases), not counted by plans. */
    static long biasParams(ModelConfig c) {
        long n = 0;
        for (LayerShape l : c.layers()) {
            n += (l.oProjBias() ? c.hiddenSize() : 0) + (l.downProjBias() ? c.hiddenSize() : 0);
        }
        return n;
    }
}
