package dev.lopper.pruning;

import ai.djl.Device;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.graph.StructureGraph;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * One pruning job for {@link Pruner}. A null setting means "the criterion's paper default"
 * ({@code Criterion.defaults()}); the result says which settings were used and where each came from.
 *
 * <pre>{@code
 * PruneRequest r = PruneRequest.builder(Path.of("fixtures/lopper-tiny"))
 *         .criterion("flap").ratio(0.2).calibration(Path.of("fixtures/text/kjv-train.txt"))
 *         .out(Path.of("work/pruned")).build();
 * }</pre>
 *
 * @param model HF model directory
 * @param criterion registered criterion name ({@code Criteria}); ignored with {@code applyPlan}
 * @param criterionOptions the criterion's options as strings (e.g. {"metric": "ifv"})
 * @param ratio fraction of prunable parameters to remove, in [0, 1); null only with {@code applyPlan}
 * @param targets any of "heads", "channels", "layers", "hidden", "sublayers"
 * @param allocation registered allocation strategy, or null for the paper's
 * @param headUnit KV_GROUP or QUERY_HEAD, or null for the paper's
 * @param headRatio uniform: per-layer ratio of head units, or null for {@code ratio}
 * @param channelRatio uniform: per-layer ratio of channels, or null for {@code ratio}
 * @param keepFirst first layers never pruned, or null for the paper's
 * @param keepLast last layers never pruned, or null for the paper's
 * @param uniformRounding uniform allocation's counting rule: {@code independent} (the official codes' int(), the
 *                        default when null) or {@code absorb}
 * @param calibration calibration text (file, .jsonl or directory), or null
 * @param calibField JSONL field holding the text
 * @param samples calibration windows, or null for the paper's
 * @param seqLen tokens per window, or null for the paper's
 * @param seed random seed (window sampling)
 * @param chunkTokens calibration tokens per forward chunk (memory only)
 * @param applyPlan a plan to apply instead of scoring, or null
 * @param out where to write the pruned model, or null
 * @param planOut where to write the plan, or null
 * @param overwrite replace an existing {@code out}/{@code planOut} that Lopper wrote
 * @param device where to compute
 * @param progress where progress goes (never printed by the pruner itself)
 * @param hiddenNorm with target "hidden": {@code keep} (slice the RMSNorm weights, Minitron's; the default when null)
 *                   or {@code rescale} (multiply them by sqrt(d / d_kept), PruningPlan.NORM_RESCALE)
 */
public record PruneRequest(Path model, String criterion, Map<String, String> criterionOptions, Double ratio,
                           Set<String> targets, String allocation, StructureGraph.Kind headUnit, Double headRatio,
                           Double channelRatio, Integer keepFirst, Integer keepLast, Path calibration, String calibField,
                           Integer samples, Integer seqLen, long seed, int chunkTokens, Path applyPlan, Path out,
                           Path planOut, boolean overwrite, Device device, Progress progress, String uniformRounding,
                           String hiddenNorm) {

    /** A request with the default hidden-norm handling. */
    public PruneRequest(Path model, String criterion, Map<String, String> criterionOptions, Double ratio,
                        Set<String> targets, String allocation, StructureGraph.Kind headUnit, Double headRatio,
                        Double channelRatio, Integer keepFirst, Integer keepLast, Path calibration, String calibField,
                        Integer samples, Integer seqLen, long seed, int chunkTokens, Path applyPlan, Path out,
                        Path planOut, boolean overwrite, Device device, Progress progress, String uniformRounding) {
        this(model, criterion, criterionOptions, ratio, targets, allocation, headUnit, headRatio, channelRatio, keepFirst,
                keepLast, calibration, calibField, samples, seqLen, seed, chunkTokens, applyPlan, out, planOut, overwrite,
                device, progress, uniformRounding, null);
    }

    /** A request with the default uniform counting rule. */
    public PruneRequest(Path model, String criterion, Map<String, String> criterionOptions, Double ratio,
                        Set<String> targets, String allocation, StructureGraph.Kind headUnit, Double headRatio,
                        Double channelRatio, Integer keepFirst, Integer keepLast, Path calibration, String calibField,
                        Integer samples, Integer seqLen, long seed, int chunkTokens, Path applyPlan, Path out,
                        Path planOut, boolean overwrite, Device device, Progress progress) {
        this(model, criterion, criterionOptions, ratio, targets, allocation, headUnit, headRatio, channelRatio, keepFirst,
                keepLast, calibration, calibField, samples, seqLen, seed, chunkTokens, applyPlan, out, planOut, overwrite,
                device, progress, null);
    }

    public PruneRequest {
        criterionOptions = Map.copyOf(criterionOptions == null ? Map.of() : criterionOptions);
        targets = targets == null ? Set.of("heads", "channels") : java.util.Collections.unmodifiableSet(new LinkedHashSet<>(targets));
        calibField = calibField == null ? "text" : calibField;
        device = device == null ? Device.cpu() : device;
        progress = progress == null ? Progress.NONE : progress;
        if (hiddenNorm != null && !"keep".equals(hiddenNorm) && !"rescale".equals(hiddenNorm)) {
            throw new IllegalArgumentException("--hidden-norm " + hiddenNorm + ": expected keep or rescale");
        }
    }

    public static Builder builder(Path model) {
        return new Builder(model);
    }

    /**
     * Every setting a pruning result depends on, as JSON (for a job's job.json, compared on resume): paths absolute,
     * options and targets in a fixed order; not the output paths, progress or chunk size, which change no number.
     */
    public com.fasterxml.jackson.databind.node.ObjectNode settingsJson() {
        com.fasterxml.jackson.databind.ObjectMapper m = new com.fasterxml.jackson.databind.ObjectMapper();
        com.fasterxml.jackson.databind.node.ObjectNode n = m.createObjectNode();
        n.put("model", abs(model));
        n.put("criterion", criterion);
        n.set("criterion_options", m.valueToTree(new java.util.TreeMap<>(criterionOptions)));
        n.put("ratio", ratio);
        n.set("targets", m.valueToTree(new java.util.TreeSet<>(targets))); // a Set iterates in a per-JVM order
        n.put("allocation", allocation);
        n.put("head_unit", headUnit == null ? null : headUnit.name());
        n.put("head_ratio", headRatio);
        n.put("channel_ratio", channelRatio);
        n.put("keep_first", keepFirst);
        n.put("keep_last", keepLast);
        n.put("uniform_rounding", uniformRounding);
        n.put("hidden_norm", hiddenNorm);
        n.put("calibration", abs(calibration));
        n.put("calib_field", calibField);
        n.put("samples", samples);
        n.put("seq_len", seqLen);
        n.put("seed", seed);
        n.put("apply_plan", abs(applyPlan));
        n.put("device", device.toString());
        return n;
    }

    private static String abs(Path p) {
        return p == null ? null : p.toAbsolutePath().normalize().toString();
    }

    /**
     * A builder holding every setting of this request, to change a few: {@code r.toBuilder().out(dir).build()}.
     * {@code toBuilder().build()} equals this request.
     */
    public Builder toBuilder() {
        return new Builder(model).criterion(criterion).options(criterionOptions).ratio(ratio).targets(targets)
                .allocation(allocation).headUnit(headUnit).headRatio(headRatio).channelRatio(channelRatio)
                .keepFirst(keepFirst).keepLast(keepLast).calibration(calibration).calibField(calibField).samples(samples)
                .seqLen(seqLen).seed(seed).chunkTokens(chunkTokens).applyPlan(applyPlan).out(out).planOut(planOut)
                .overwrite(overwrite).device(device).progress(progress).uniformRounding(uniformRounding).hiddenNorm(hiddenNorm);
    }

    /** Fluent construction; every setting optional except the model (and the ratio, unless a plan is applied). */
    public static final class Builder {
        private Path model;
        private String criterion = "magnitude";
        private final Map<String, String> criterionOptions = new LinkedHashMap<>();
        private Double ratio;
        private Set<String> targets;
        private String allocation;
        private StructureGraph.Kind headUnit;
        private Double headRatio;
        private Double channelRatio;
        private Integer keepFirst;
        private Integer keepLast;
        private String uniformRounding;
        private String hiddenNorm;
        private Path calibration;
        private String calibField;
        private Integer samples;
        private Integer seqLen;
        private long seed;
        private int chunkTokens = 512;
        private Path applyPlan;
        private Path out;
        private Path planOut;
        private boolean overwrite;
        private Device device;
        private Progress progress;

        private Builder(Path model) {
            this.model = model;
        }

        public Builder model(Path p) { this.model = p; return this; }
        public Builder criterion(String name) { this.criterion = name; return this; }
        public Builder option(String key, String value) { criterionOptions.put(key, value); return this; }
        /** Replaces every criterion option with {@code options} (null: none). */
        public Builder options(Map<String, String> options) {
            criterionOptions.clear();
            if (options != null) {
                criterionOptions.putAll(options);
            }
            return this;
        }
        public Builder ratio(double r) { this.ratio = r; return this; }
        public Builder ratio(Double r) { this.ratio = r; return this; }
        public Builder targets(String... t) { this.targets = new LinkedHashSet<>(List.of(t)); return this; }
        public Builder targets(Set<String> t) { this.targets = t == null ? null : new LinkedHashSet<>(t); return this; }
        public Builder allocation(String a) { this.allocation = a; return this; }
        public Builder headUnit(StructureGraph.Kind k) { this.headUnit = k; return this; }
        public Builder headRatio(Double r) { this.headRatio = r; return this; }
        public Builder channelRatio(Double r) { this.channelRatio = r; return this; }
        public Builder keepFirst(Integer k) { this.keepFirst = k; return this; }
        public Builder keepLast(Integer k) { this.keepLast = k; return this; }
        public Builder calibration(Path p) { this.calibration = p; return this; }
        public Builder calibField(String f) { this.calibField = f; return this; }
        public Builder samples(Integer n) { this.samples = n; return this; }
        public Builder seqLen(Integer n) { this.seqLen = n; return this; }
        public Builder seed(long s) { this.seed = s; return this; }
        public Builder chunkTokens(int n) { this.chunkTokens = n; return this; }
        public Builder applyPlan(Path p) { this.applyPlan = p; return this; }
        public Builder out(Path p) { this.out = p; return this; }
        public Builder planOut(Path p) { this.planOut = p; return this; }
        public Builder overwrite(boolean o) { this.overwrite = o; return this; }
        public Builder device(Device d) { this.device = d; return this; }
        public Builder progress(Progress p) { this.progress = p; return this; }
        public Builder uniformRounding(String rule) { this.uniformRounding = rule; return this; }
        public Builder hiddenNorm(String norm) { this.hiddenNorm = norm; return this; }

        public PruneRequest build() {
            return new PruneRequest(model, criterion, criterionOptions, ratio, targets, allocation, headUnit, headRatio,
                    channelRatio, keepFirst, keepLast, calibration, calibField, samples, seqLen, seed, chunkTokens, applyPlan,
                    out, planOut, overwrite, device, progress, uniformRounding, hiddenNorm);
        }
    }
}
