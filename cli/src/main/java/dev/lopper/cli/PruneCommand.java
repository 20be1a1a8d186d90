package dev.lopper.cli;

import dev.lopper.training.job.PruneAndRecover;

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
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.PruneResult;
import dev.lopper.pruning.Pruner;
import dev.lopper.pruning.RunStats;
import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code lopper prune MODEL --method magnitude --ratio 0.2 --targets heads,channels --out DIR}: parses the options
 * into a {@link PruneRequest}, runs it with {@link Pruner} and prints the settings used and the summary. Options
 * left out take the method's paper defaults ({@code Criterion.defaults()}).
 */
@Command(name = "prune", mixinStandardHelpOptions = true, abbreviateSynopsis = true,
        description = {"Structurally prune a model: remove attention heads / GQA groups, MLP channels or layers.",
                "Writes a smaller HF model (--out) and/or the pruning plan (--plan-out); --apply-plan applies a plan instead of scoring."})
public final class PruneCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Parameters(index = "0", paramLabel = "MODEL", description = "HF model directory (config.json, *.safetensors, tokenizer.json)")
    Path model;

    @Option(names = "--method", defaultValue = "magnitude", description = "pruning method (a criterion, or a training-aware method run on the schedule engine): ${COMPLETION-CANDIDATES}; default ${DEFAULT-VALUE}",
            completionCandidates = MethodNames.class)
    String method;

    @Option(names = "--norm", description = "magnitude norm: l1 or l2 (default l2)")
    String norm;

    @Option(names = "--ratio", description = "fraction of prunable parameters to remove, in [0, 1)")
    Double ratio;

    @Option(names = "--targets", split = ",", defaultValue = "heads,channels",
            description = "what to prune: heads, channels, layers, hidden (the residual stream's channels: embeddings, norms, every projection's hidden side, LM head), sublayers (a layer's attention or MLP alone) (comma-separated); default ${DEFAULT-VALUE}")
    List<String> targets;

    @Option(names = "--hidden-norm", description = "--targets hidden: keep (slice the RMSNorm weights as they are, Minitron's; default) or rescale (multiply them by sqrt(d / d_kept) and rms_norm_eps by d / d_kept: the pruned model then equals the dense one with those channels zeroed)")
    String hiddenNorm;

    @Option(names = "--allocation", description = "uniform (same fraction per layer; FLAP's UL-UM), global (one threshold), adaptive (FLAP's AL-AM), ul-mm or al-mm (FLAP's manual head/MLP split, --head-ratio) cfsp-blocks (CFSP's block budgets) or adapt-pruner (Adapt-Pruner's layer-wise sparsity from each layer's 1 - cos of input and output, measured on --calib, any criterion); default: the method's paper (magnitude uniform, wanda-sp uniform, flap adaptive, cfsp cfsp-blocks)")
    String allocation;

    @Option(names = "--uniform-rounding", description = "uniform: independent (int(r x heads), int(r x channels): FLAP's and Wanda-sp's codes; their default), llm-pruner (n - int(n (1 - r)) per layer, a head and a channel one unit each under global: MetaPruner's; llm-pruner's default) or absorb (round, channels absorb the heads' rounding)")
    String uniformRounding;

    @Option(names = "--head-unit", description = "kv-group (whole GQA groups with their query heads) or query-head (heads inside every group alike); default: the criterion's")
    String headUnit;

    @Option(names = "--head-ratio", description = "uniform: fraction of head units removed per layer (default --ratio)")
    Double headRatio;

    @Option(names = "--channel-ratio", description = "uniform: fraction of MLP channels removed per layer (default --ratio)")
    Double channelRatio;

    @Option(names = "--keep-first", description = "never prune the first N layers (default: the method's paper: llm-pruner round(4L/32), the README's 4..30 of 32 layers; the others 0)")
    Integer keepFirst;

    @Option(names = "--keep-last", description = "never prune the last N layers (default: the method's paper: llm-pruner round(2L/32); the others 0)")
    Integer keepLast;

    @Option(names = "--seed", defaultValue = "0", description = "random seed of calibration window sampling, and of the training windows of training-aware methods and --iterative (not of --recover-steps: --recover-seed). Default: ${DEFAULT-VALUE} (the official FLAP script's seed)")
    long seed;

    @Option(names = "--calib", paramLabel = "FILE", description = "calibration text for wanda-sp/flap/cfsp/llm-pruner/gblm: a text file, a .jsonl file (field --calib-field) or a directory of text files")
    Path calib;

    @Option(names = "--calib-field", defaultValue = "text", description = "JSONL field holding the text; default ${DEFAULT-VALUE}")
    String calibField;

    @Option(names = "--samples", description = "calibration windows (default: the method's paper: wanda-sp 128, flap 1024, cfsp 128, llm-pruner 10, gblm 128)")
    Integer samples;

    @Option(names = "--seq-len", description = "tokens per calibration window (default: the method's paper: wanda-sp 128, flap 128, cfsp 1024, llm-pruner 64, gblm 2048)")
    Integer seqLen;

    @Option(names = "--chunk-tokens", defaultValue = "512", description = "calibration tokens per forward chunk: memory vs speed, results do not change; default ${DEFAULT-VALUE}")
    int chunkTokens;

    @Option(names = "--wanda-order", description = "wanda-sp and gblm: sequential (the official order: each layer pruned before the next is scored; needs --allocation uniform) or dense (all layers scored on the dense model); default sequential with uniform allocation, else dense")
    String wandaOrder;

    @Option(names = "--taylor", description = "llm-pruner: param_first (default: hf_prune.py's argparse default, which the paper's runs use), param_second, param_mix or vectorize")
    String taylor;

    @Option(names = "--llm-pruner-layers", description = "llm-pruner: paper (default: the README's layers 4..30 of 32, scaled to the depth) or argparse (hf_prune.py's 3..31)")
    String llmPrunerLayers;

    @Option(names = "--grouping", description = "llm-pruner: how a group's linears combine per channel: sum (default), mean, max or prod")
    String grouping;

    @Option(names = "--gblm-scale", description = "gblm: the gradient scale of gradient_computation.py (default 100)")
    String gblmScale;

    @Option(names = "--flap-metric", description = "flap channel metric: wifv (default), ifv or wifn")
    String flapMetric;

    @Option(names = "--bias-compensation", negatable = true,
            description = "flap: add the removed channels' mean contribution as o_proj/down_proj biases (default on; --no-bias-compensation turns it off)")
    Boolean biasCompensation;

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

    /** --iterative, --iterative-steps and training-aware methods (the schedule engine in the training module). */
    @Mixin
    ScheduleOptions schedule;

    /** {@code --recover-steps N} and the recovery options: prune, then LoRA recovery (recovery's PruneAndRecover). */
    @Mixin
    RecoverOptions recovery;

    /** The training options every training path of prune shares (schedule engine and --recover-steps). */
    @Mixin
    TrainingOptions training;

    @Option(names = "--reg-lr", description = "compresso: learning rate of the masks' log_alpha and (ascending) of the Lagrange multipliers; default 0.1 (the official)")
    Double regLr;

    @Option(names = "--compresso-ending", description = "compresso: ratio (default: finish at --ratio, units ranked by their learned log_alpha) or official (each layer's deterministic mask, CoFi's deterministic_z, whatever sparsity the masks reached)")
    String compressoEnding;

    @Option(names = "--prompt", description = "compresso: the collaborative prompt, prepended to every training window (its tokens carry no loss)")
    String prompt;

    /** {@code lopper prune --help}: the options by what they configure ({@link HelpSections}). */
    static Map<String, List<String>> helpSections() {
        Map<String, List<String>> s = new java.util.LinkedHashMap<>();
        s.put("What to prune", List.of("--method", "--ratio", "--targets", "--hidden-norm", "--allocation", "--uniform-rounding", "--head-unit",
                "--head-ratio", "--channel-ratio", "--keep-first", "--keep-last", "--apply-plan"));
        s.put("Calibration (wanda-sp, flap, cfsp, llm-pruner, gblm, adapt-pruner)", List.of("--calib", "--calib-field", "--samples",
                "--seq-len", "--seed", "--chunk-tokens"));
        s.put("Options of one method (each says which)", List.copyOf(MethodOptions.KEYS.keySet()));
        s.put("Output", List.of("--out", "--plan-out", "--overwrite", "--json"));
        s.put("Scheduled and iterative pruning (training-aware methods, --iterative)", List.of("--iterative", "--iterative-steps",
                "--train-steps-per-step", "--steps", "--output-dtype"));
        s.put("Training (training-aware methods, --iterative with --train-steps-per-step, --recover-steps)", List.of("--train-data",
                "--val-data", "--val-fraction", "--val-windows", "--train-seq-len", "--micro-batch", "--accumulation", "--lr",
                "--weight-decay", "--warmup", "--max-grad-norm", "--eval-every", "--checkpoint-every", "--patience", "--lora-rank",
                "--lora-alpha", "--lora-dropout", "--lora-targets"));
        s.put("Recovery after pruning (LoRA, as lopper recover)", java.util.stream.Stream.concat(java.util.stream.Stream.of("--recover-steps", "--recover-seed",
                "--merged-dtype", "--stream"), DistillOptions.NAMES.stream()).toList());
        s.put("Model and device", List.of("--device", "--threads"));
        s.put("General", List.of("--debug", "--help", "--version"));
        return s;
    }

    /** Completion candidates for --method: every criterion and training-aware method, in name order. */
    static final class MethodNames implements Iterable<String> {
        @Override
        public java.util.Iterator<String> iterator() {
            return all().iterator();
        }

        static java.util.TreeSet<String> all() {
            java.util.TreeSet<String> all = new java.util.TreeSet<>(Criteria.names());
            all.addAll(dev.lopper.training.job.ScheduleMethods.names());
            return all;
        }
    }

    @Override
    public Integer call() throws Exception {
        PruneRequest request = request();
        MethodOptions.check(method, request.criterionOptions().keySet());
        if (schedule.scheduled(method)) {
            if (request.targets().contains("hidden") || request.targets().contains("sublayers")) {
                // the schedule engine maps scores of heads and channels between steps; the stream and sublayers are one-shot
                throw new IllegalArgumentException("--targets hidden/sublayers: one-shot only (not with " + method
                        + " or --iterative); add --recover-steps N for LoRA recovery after the prune");
            }
            if (recovery.steps != null) {
                throw new IllegalArgumentException("--recover-steps: " + method + " with these options already trains while it prunes; "
                        + "give its training budget with --steps / --train-steps-per-step instead");
            }
            if (recovery.settings.distill.firstGiven() != null) { // distillation is a recovery loss (RecoverOptions / DistillOptions)
                throw new IllegalArgumentException(recovery.settings.distill.firstGiven() + ": only with --recover-steps N after a one-shot criterion; "
                        + method + " trains with its own loss");
            }
            // training-aware methods and --iterative run on the schedule engine (training module)
            try (StopOnSignal stop = new StopOnSignal()) { // Ctrl-C checkpoints every training method
                return printSchedule(new dev.lopper.training.job.PruneSchedule().run(schedule.request(request, training, seed), stop::watch));
            } catch (dev.lopper.training.job.TrainingInterrupted e) {
                spec.commandLine().getErr().println(e.getMessage());
                spec.commandLine().getErr().flush();
                return 130; // as a shell reports SIGINT; the same command continues
            }
        }
        if (recovery.steps != null) {
            PruneAndRecover.Outcome o = recovery.run(request, training, spec.commandLine().getErr());
            if (o.prune() != null && !options.json) { // null: an earlier run's pruned model was reused
                print(o.prune());
            }
            recovery.report(o, spec.commandLine().getOut(), options.json);
            return o.recovery().train().interrupted() ? 130 : 0;
        }
        // a run that trains nothing refuses the training and recovery options
        String unused = firstGiven("recovery");
        unused = unused != null ? unused : firstGiven("training");
        if (unused != null) {
            throw new IllegalArgumentException(unused + ": only with --recover-steps N (recovery after pruning), a training-aware --method or --iterative with --train-steps-per-step");
        }
        // never destroy what Lopper did not write: checked before any work (OutputGuard)
        Pruner.checkOutputs(request);
        print(new Pruner().run(request));
        return 0;
    }

    /** The first option of the mixin {@code mixin} given on the command line (its longest name), or null. */
    private String firstGiven(String mixin) {
        ParseResult parsed = spec.commandLine().getParseResult();
        for (OptionSpec o : spec.mixins().get(mixin).options()) {
            if (parsed.hasMatchedOption(o.longestName())) {
                return o.longestName();
            }
        }
        return null;
    }

    /** The options as a request; options not given stay null, so the pruner takes the method's paper defaults. */
    PruneRequest request() {
        Map<String, String> copts = new java.util.LinkedHashMap<>();
        putIf(copts, "norm", norm);
        putIf(copts, "metric", flapMetric);
        putIf(copts, "compensation", biasCompensation == null ? null : biasCompensation.toString());
        putIf(copts, "order", wandaOrder);
        putIf(copts, "taylor", taylor);
        putIf(copts, "layers", llmPrunerLayers);
        putIf(copts, "grouping", grouping);
        putIf(copts, "scale", gblmScale);
        putIf(copts, "reg-lr", regLr == null ? null : regLr.toString());
        putIf(copts, "prompt", prompt);
        putIf(copts, "ending", compressoEnding);
        putIf(copts, "prune-freq", schedule.pruneFreq == null ? null : schedule.pruneFreq.toString());
        putIf(copts, "step-ratio", schedule.stepRatio == null ? null : schedule.stepRatio.toString());
        putIf(copts, "criterion", schedule.criterion);
        return PruneRequest.builder(model).criterion(method).options(copts).ratio(ratio).targets(new LinkedHashSet<>(targets))
                .allocation(allocation).headUnit(parseHeadUnit(headUnit)).headRatio(headRatio).channelRatio(channelRatio)
                .keepFirst(keepFirst).keepLast(keepLast).calibration(calib).calibField(calibField).samples(samples).seqLen(seqLen)
                .seed(seed).chunkTokens(chunkTokens).applyPlan(applyPlan).out(out).planOut(planOut).overwrite(overwrite)
                .device(options.device()).progress(Progress.console(System.err)).uniformRounding(uniformRounding).hiddenNorm(hiddenNorm).build();
    }

    private int printSchedule(dev.lopper.training.job.PruneSchedule.Result r) {
        PrintWriter w = spec.commandLine().getOut();
        PruningPlan.Result res = r.plan().result();
        Double[] loss = RecoverCommand.valLosses(r.curve()); // first and last
        if (options.json) {
            ObjectNode o = new ObjectMapper().createObjectNode();
            o.put("model", model.toString()).put("out", r.model().toString()).put("method", method);
            o.put("params_before", res.paramsBefore()).put("params_after", res.paramsAfter());
            o.put("achieved_ratio", res.achievedRatio());
            o.put("resumed_after_step", r.resumedAfter());
            o.put("val_loss_before", loss[0]);
            o.put("val_loss_after", loss[1]);
            o.set("plan", r.plan().toJson());
            Output.json(w, o);
        } else {
            w.printf("pruned %s with %s (scheduled): %,d -> %,d parameters (%.2f%% of all removed)%n", model, method,
                    res.paramsBefore(), res.paramsAfter(), 100.0 * res.removedParams() / res.paramsBefore());
            w.println("model written to " + r.model() + " (plan on the original model's indices: " + Surgery.PLAN_FILE
                    + "; loss, learning rate and size over steps: curve.csv, curve.png;"
                    + " checkpoints in " + dev.lopper.training.job.JobDir.dirOf(r.model()) + ")");
            if (loss[0] != null) {
                w.printf(java.util.Locale.ROOT, "validation loss: %.4f -> %.4f (perplexity %.3f -> %.3f)%n", loss[0], loss[1], Math.exp(loss[0]),
                        Math.exp(loss[1]));
            }
        }
        w.flush();
        return 0;
    }

    private static void putIf(Map<String, String> m, String k, String v) {
        if (v != null) {
            m.put(k, v);
        }
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

    private void print(PruneResult result) throws Exception {
        try (ModelDir md = ModelDir.open(model)) {
            print(md.config(), result);
        }
    }

    private void print(ModelConfig config, PruneResult result) throws Exception {
        PrintWriter w = spec.commandLine().getOut();
        PruningPlan plan = result.plan();
        List<LayerSelection> sel = result.selections();
        RunStats st = result.stats();
        PruningPlan.Result r = plan.result();
        if (options.json) {
            ObjectNode o = new ObjectMapper().createObjectNode();
            o.put("model", model.toString());
            if (out != null) {
                o.put("out", out.toString());
            }
            if (planOut != null) {
                o.put("plan_out", planOut.toString());
            }
            o.put("criterion", plan.criterion());
            o.put("allocation", plan.allocation());
            o.set("settings", result.settings().toJson());
            o.put("params_before", r.paramsBefore());
            o.put("params_after", r.paramsAfter());
            o.put("prunable_params", r.prunableParams());
            o.put("achieved_ratio", r.achievedRatio());
            if (plan.ratio() != null) {
                o.put("requested_ratio", plan.ratio());
            }
            if (r.shortfall() != null) {
                o.put("shortfall", r.shortfall());
            }
            o.put("seconds", st.seconds());
            o.put("peak_rss_bytes", st.peakRssBytes());
            if (st.calibrationLayers() > 0) {
                o.put("calibration_tokens", st.calibrationTokens());
                o.put("calibration_seconds", st.calibrationSeconds());
            }
            o.put("bias_compensation", st.afterSurgeryParams() > 0);
            o.put("after_surgery", st.afterSurgery());
            o.put("compensation_bias_params", st.afterSurgeryParams());
            ArrayNode layers = o.putArray("layers");
            for (LayerSelection s : sel) {
                ObjectNode l = layers.addObject();
                LayerShape before = config.layer(s.layer());
                l.put("layer", s.layer());
                l.put("removed", s.removed());
                l.put("heads", s.keptHeads().length).put("heads_before", before.numHeads());
                l.put("kv_heads", s.keptKvGroups().length).put("kv_heads_before", before.numKvHeads());
                l.put("channels", s.keptChannels().length).put("channels_before", before.intermediateSize());
            }
            Output.json(w, o);
        } else {
            w.printf("settings (paper = the method's paper defaults, user = given):%n%s", result.settings().describe());
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
            if (st.calibrationLayers() > 0) {
                w.printf("calibration: %,d tokens per layer in %.1f s (%,.0f tok/s)%n", st.calibrationTokens(), st.calibrationSeconds(),
                        st.calibrationTokens() * st.calibrationLayers() / Math.max(1e-9, st.calibrationSeconds()));
            }
            if (st.afterSurgeryParams() > 0) {
                w.printf("after surgery: %s, %,d parameters (not counted above)%n", st.afterSurgery(), st.afterSurgeryParams());
            }
            long rss = st.peakRssBytes();
            w.printf("time %.1f s%s%n", st.seconds(), rss > 0 ? String.format(", peak memory (RSS) %.1f MiB", rss / 1048576.0) : "");
        }
        w.flush();
    }
}
