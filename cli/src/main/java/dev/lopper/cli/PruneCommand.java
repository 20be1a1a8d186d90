package dev.lopper.cli;

import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.pruning.criteria.Criterion;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.criteria.ScoringContext;
import dev.lopper.pruning.criteria.CalibratedCriterion;
import dev.lopper.pruning.criteria.WandaSpCriterion;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.surgery.Surgery;
import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.pruning.criteria.FlapCriterion;
import ai.djl.Device;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.io.OutputLock;
import ai.djl.ndarray.NDManager;
import dev.lopper.calibration.CalibrationData;
import dev.lopper.calibration.CalibrationEngine;
import dev.lopper.calibration.Progress;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;

/**
 * {@code lopper prune MODEL --method magnitude --ratio 0.2 --targets heads,channels --out DIR}: scores the
 * model's structures, allocates the cut, writes the plan and/or the smaller model. Every input is checked before
 * anything is written.
 */
@Command(name = "prune", mixinStandardHelpOptions = true,
        description = {"Structurally prune a model: remove attention heads / GQA groups, MLP channels or layers.",
                "Writes a smaller HF model (--out) and/or the pruning plan (--plan-out); --apply-plan applies a plan instead of scoring."})
public final class PruneCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Parameters(index = "0", paramLabel = "MODEL", description = "HF model directory (config.json, *.safetensors, tokenizer.json)")
    Path model;

    @Option(names = "--method", defaultValue = "magnitude", description = "criterion: ${COMPLETION-CANDIDATES}; default ${DEFAULT-VALUE}",
            completionCandidates = MethodNames.class)
    String method;

    @Option(names = "--norm", description = "magnitude norm: l1 or l2 (default l2)")
    String norm;

    @Option(names = "--ratio", description = "fraction of prunable parameters to remove, in [0, 1)")
    Double ratio;

    @Option(names = "--targets", split = ",", defaultValue = "heads,channels",
            description = "what to prune: heads, channels, layers (comma-separated); default ${DEFAULT-VALUE}")
    List<String> targets;

    @Option(names = "--allocation", defaultValue = "uniform", description = "uniform (same fraction per layer; FLAP's UL-UM), global (one threshold), adaptive (FLAP's AL-AM; CFSP's block budgets), ul-mm or al-mm (FLAP's manual head/MLP split, --head-ratio); default ${DEFAULT-VALUE}")
    String allocation;

    @Option(names = "--head-unit", description = "kv-group (whole GQA groups with their query heads) or query-head (heads inside every group alike); default: the criterion's")
    String headUnit;

    @Option(names = "--head-ratio", description = "uniform: fraction of head units removed per layer; ul-mm/al-mm: the manual share of head units removed (official --remove_heads N = N / (layers x heads)); default --ratio")
    Double headRatio;

    @Option(names = "--uniform-rounding", description = "uniform: independent (int(r x heads), int(r x channels): the official codes; default) or absorb (round, channels absorb the heads' rounding)")
    String uniformRounding;

    @Option(names = "--channel-ratio", description = "uniform: fraction of MLP channels removed per layer (default --ratio)")
    Double channelRatio;

    @Option(names = "--keep-first", defaultValue = "0", description = "never prune the first N layers")
    int keepFirst;

    @Option(names = "--keep-last", defaultValue = "0", description = "never prune the last N layers")
    int keepLast;

    @Option(names = "--seed", defaultValue = "0", description = "random seed (calibration window sampling); default ${DEFAULT-VALUE}")
    long seed;

    @Option(names = "--calib", paramLabel = "FILE", description = "calibration text for wanda-sp/flap/cfsp: a text file, a .jsonl file (field --calib-field) or a directory of text files")
    Path calib;

    @Option(names = "--calib-field", defaultValue = "text", description = "JSONL field holding the text; default ${DEFAULT-VALUE}")
    String calibField;

    @Option(names = "--samples", description = "calibration windows (default: the method's paper: wanda-sp 128, flap 1024, cfsp 128)")
    Integer samples;

    @Option(names = "--seq-len", description = "tokens per calibration window (default: the method's paper: wanda-sp 128, flap 128, cfsp 1024)")
    Integer seqLen;

    @Option(names = "--chunk-tokens", defaultValue = "512", description = "calibration tokens per forward chunk: memory vs speed, results do not change; default ${DEFAULT-VALUE}")
    int chunkTokens;

    @Option(names = "--wanda-order", description = "wanda-sp: sequential (the official order: each layer pruned before the next is scored; needs --allocation uniform) or dense (all layers scored on the dense model); default sequential with uniform allocation, else dense")
    String wandaOrder;

    @Option(names = "--flap-metric", description = "flap channel metric: wifv (default), ifv or wifn")
    String flapMetric;

    @Option(names = "--bias-compensation", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "flap: add the removed channels' mean contribution as o_proj/down_proj biases (default on; --no-bias-compensation turns it off)")
    boolean biasCompensation;

    @Option(names = "--out", paramLabel = "DIR", description = "write the pruned model here (HF safetensors + config.json + tokenizer); a new or empty directory, or one Lopper wrote with --overwrite")
    Path out;

    @Option(names = "--overwrite", description = "replace an existing --out / --plan-out that Lopper wrote earlier (never anything else)")
    boolean overwrite;

    @Option(names = "--plan-out", paramLabel = "FILE", description = "write the pruning plan (JSON, docs/FORMAT.md) here")
    Path planOut;

    @Option(names = "--apply-plan", paramLabel = "FILE", description = "apply this plan instead of scoring (hand-written or from --plan-out)")
    Path applyPlan;

    @Mixin
    ModelOptions options;

    private CalibrationEngine.Result calibration;
    private FlapCriterion compensation;
    private long compensationParams;

    /** Completion candidates for --method. */
    static final class MethodNames implements Iterable<String> {
        @Override
        public java.util.Iterator<String> iterator() {
            return Criteria.names().stream().sorted().iterator();
        }
    }

    @Override
    public Integer call() throws Exception {
        long start = System.nanoTime();
        if (out == null && planOut == null) {
            throw new IllegalArgumentException("nothing to write: give --out DIR (the pruned model) and/or --plan-out FILE");
        }
        // never destroy what Lopper did not write: checked before any work (OutputGuard)
        if (out != null) {
            OutputGuard.checkDirectory(out, overwrite, "--out", model, applyPlan, calib);
        }
        if (planOut != null) {
            OutputGuard.checkFile(planOut, overwrite, "--plan-out", PruningPlan.FORMAT_PREFIX, model, applyPlan, calib, out);
        }
        // a second run writing the same outputs fails now, not after its calibration
        try (OutputLock outLock = out == null ? null : OutputLock.acquire(out, "--out");
             OutputLock planLock = planOut == null ? null : OutputLock.acquire(planOut, "--plan-out")) {
            return prune(start);
        }
    }

    private Integer prune(long start) throws Exception {
        Device dev = options.device();
        try (ModelDir md = ModelDir.open(model)) {
            ModelConfig config = md.config();
            String hash = ModelHash.of(model);
            PruningPlan plan;
            if (applyPlan != null) {
                if (ratio != null) {
                    throw new IllegalArgumentException("--ratio has no effect with --apply-plan (the plan says what to cut)");
                }
                plan = PruningPlan.load(applyPlan);
                List<LayerSelection> sel;
                try {
                    plan.checkModel(hash);
                    sel = plan.resolve(config);
                } catch (IllegalArgumentException e) {
                    // validation speaks of "plan: ..."; the user should see which file
                    throw new IllegalArgumentException(e.getMessage().replaceFirst("^plan: ", applyPlan + ": "), e);
                }
                plan = plan.withModelHash(hash).withResult(Allocation.result(config, sel, plan.targets().contains("heads"),
                        plan.targets().contains("channels"), plan.targets().contains("layers"), 0, 0));
            } else {
                if (ratio == null) {
                    throw new IllegalArgumentException("--ratio is required (the fraction of prunable parameters to remove, in [0, 1)), or give --apply-plan FILE");
                }
                Allocation.Options alloc = new Allocation.Options(ratio, new LinkedHashSet<>(targets), allocation,
                        parseHeadUnit(headUnit), headRatio, channelRatio, keepFirst, keepLast, uniformRounding);
                Map<String, String> copts = new java.util.HashMap<>();
                if (norm != null) {
                    copts.put("norm", norm);
                }
                if (flapMetric != null) {
                    copts.put("metric", flapMetric);
                }
                copts.put("compensation", Boolean.toString(biasCompensation));
                Criterion criterion = Criteria.create(method, copts);
                if (!Allocation.strategies().contains(allocation)) {
                    throw new IllegalArgumentException("--allocation " + allocation + ": expected one of " + Allocation.strategies());
                }
                if (criterion instanceof WandaSpCriterion wanda) {
                    String order = wandaOrder != null ? wandaOrder : "uniform".equals(allocation) ? "sequential" : "dense";
                    switch (order) {
                        case "sequential" -> wanda.sequential(alloc);
                        case "dense" -> { }
                        default -> throw new IllegalArgumentException("--wanda-order " + wandaOrder + ": expected sequential or dense");
                    }
                } else if (wandaOrder != null) {
                    throw new IllegalArgumentException("--wanda-order applies to --method wanda-sp only");
                }
                long[][] windows = null;
                PruningPlan.Calibration calibInfo = null;
                if (criterion instanceof CalibratedCriterion cc) {
                    if (calib == null) {
                        throw new IllegalArgumentException("--method " + method + " needs calibration data: give --calib FILE (text, .jsonl or a directory)");
                    }
                    if ("global".equals(allocation) && !cc.comparableAcrossLayers()) {
                        // fail before the calibration pass, not after it
                        throw new IllegalArgumentException("--allocation global needs scores comparable across layers, and " + method
                                + "'s are not; use --allocation uniform or adaptive (which standardizes them per layer)");
                    }
                    int n = samples != null ? samples : cc.defaultSamples();
                    int len = seqLen != null ? seqLen : cc.defaultSeqLen();
                    CalibrationData data = CalibrationData.load(calib, md.tokenizer(), n, len, seed, calibField,
                            CalibrationData.defaultCacheDir());
                    windows = data.windows();
                    calibInfo = new PruningPlan.Calibration(calib.toString(), n, len);
                    cc.withProgress(Progress.console(System.err)).withChunkTokens(chunkTokens);
                } else if (calib != null || samples != null || seqLen != null) {
                    throw new IllegalArgumentException("--calib/--samples/--seq-len: --method " + method + " uses no calibration data");
                }
                ScoringContext ctx = new ScoringContext(config, md.checkpoint(), StructureGraph.of(config), dev, windows, calibInfo, seed,
                        msg -> { });
                Scores scores = criterion.score(ctx);
                if (criterion instanceof CalibratedCriterion cc && cc.lastRun() != null) {
                    calibration = cc.lastRun();
                }
                plan = Allocation.allocate(ctx.graph(), scores, alloc)
                        .withProvenance(criterion.name(), criterion.options(), ratio,
                                PruningPlan.TARGETS.stream().filter(targets::contains).toList(), allocation, calibInfo, seed)
                        .withModelHash(hash);
                compensation = criterion instanceof FlapCriterion f && f.compensates() ? f : null;
            }
            List<LayerSelection> sel = plan.resolve(config);
            if (out != null) {
                try (NDManager biases = NDManager.newBaseManager()) {
                    Surgery.Result result = Surgery.apply(config, md.checkpoint(), sel);
                    if (compensation != null) {
                        // FLAP: removed channels' mean contribution -> o_proj/down_proj biases (BiasCompensation)
                        result = compensation.compensation().apply(config, md.checkpoint(), result, biases);
                        for (LayerShape l : result.config().layers()) {
                            compensationParams += (l.oProjBias() ? config.hiddenSize() : 0) + (l.downProjBias() ? config.hiddenSize() : 0);
                        }
                    }
                    Surgery.save(result, out, model, plan);
                }
            }
            if (planOut != null) {
                plan.save(planOut);
            }
            print(config, plan, sel, (System.nanoTime() - start) / 1e9);
        }
        return 0;
    }

    /** Peak resident set size of this process (VmHWM in /proc/self/status), or -1 where unavailable. */
    static long peakRssBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (Exception e) {
            // not Linux: no peak figure
        }
        return -1;
    }

    private static StructureGraph.Kind parseHeadUnit(String s) {
        if (s == null) {
            return null;
        }
        return switch (s.trim().toLowerCase()) {
            case "kv-group", "kv-groups", "group", "groups" -> StructureGraph.Kind.KV_GROUP;
            case "query-head", "query-heads", "head", "heads" -> StructureGraph.Kind.QUERY_HEAD;
            default -> throw new IllegalArgumentException("--head-unit " + s + ": expected kv-group or query-head");
        };
    }

    private void print(ModelConfig config, PruningPlan plan, List<LayerSelection> sel, double seconds) throws Exception {
        PrintWriter w = spec.commandLine().getOut();
        PruningPlan.Result r = plan.result();
        if (options.json) {
            ObjectNode o = new ObjectMapper().createObjectNode();
            o.put("model", model.toString());
            if (out != null) {
                o.put("out", out.toString());
            }
            if (planOut != null) {
                o.put("planOut", planOut.toString());
            }
            o.put("criterion", plan.criterion());
            o.put("allocation", plan.allocation());
            o.put("paramsBefore", r.paramsBefore());
            o.put("paramsAfter", r.paramsAfter());
            o.put("prunableParams", r.prunableParams());
            o.put("achievedRatio", r.achievedRatio());
            if (plan.ratio() != null) {
                o.put("requestedRatio", plan.ratio());
            }
            o.put("seconds", seconds);
            o.put("peakRssBytes", peakRssBytes());
            if (calibration != null) {
                o.put("calibrationTokens", calibration.tokens());
                o.put("calibrationSeconds", calibration.seconds());
            }
            o.put("biasCompensation", compensation != null);
            o.put("compensationBiasParams", compensationParams);
            ArrayNode layers = o.putArray("layers");
            for (LayerSelection s : sel) {
                ObjectNode l = layers.addObject();
                LayerShape before = config.layer(s.layer());
                l.put("layer", s.layer());
                l.put("removed", s.removed());
                l.put("heads", s.keptHeads().length).put("headsBefore", before.numHeads());
                l.put("kvHeads", s.keptKvGroups().length).put("kvHeadsBefore", before.numKvHeads());
                l.put("channels", s.keptChannels().length).put("channelsBefore", before.intermediateSize());
            }
            Output.json(w, o);
        } else {
            w.printf("pruned %s with %s (%s): %,d -> %,d parameters (%.2f%% of all removed)%n", model, plan.criterion(),
                    plan.allocation() == null ? "plan" : plan.allocation(), r.paramsBefore(), r.paramsAfter(),
                    100.0 * r.removedParams() / r.paramsBefore());
            w.printf("achieved ratio %.4f of %,d prunable parameters%s%n", r.achievedRatio(), r.prunableParams(),
                    plan.ratio() == null ? "" : String.format(" (requested %.4f)", plan.ratio()));
            w.println("layer  heads  kv-heads  channels");
            for (LayerSelection s : sel) {
                LayerShape b = config.layer(s.layer());
                if (s.removed()) {
                    w.printf("%5d  removed%n", s.layer());
                } else {
                    w.printf("%5d  %2d/%-3d %3d/%-4d %6d/%d%n", s.layer(), s.keptHeads().length, b.numHeads(), s.keptKvGroups().length,
                            b.numKvHeads(), s.keptChannels().length, b.intermediateSize());
                }
            }
            if (out != null) {
                w.println("model written to " + out);
            }
            if (planOut != null) {
                w.println("plan written to " + planOut);
            }
            if (calibration != null) {
                w.printf("calibration: %,d tokens per layer in %.1f s (%,.0f tok/s)%n", calibration.tokens(), calibration.seconds(),
                        calibration.tokens() * calibration.layers() / Math.max(1e-9, calibration.seconds()));
            }
            if (compensation != null) {
                w.printf("bias compensation (FLAP): o_proj/down_proj biases added, %,d parameters (not counted above)%n", compensationParams);
            }
            long rss = peakRssBytes();
            w.printf("time %.1f s%s%n", seconds, rss > 0 ? String.format(", peak memory (RSS) %.1f MiB", rss / 1048576.0) : "");
        }
        w.flush();
    }
}
