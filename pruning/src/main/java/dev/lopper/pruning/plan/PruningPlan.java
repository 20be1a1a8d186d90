package dev.lopper.pruning.plan;

import dev.lopper.pruning.graph.LayerSelection;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * What to cut, as a plain JSON document ({@code "format": "lopper-plan/1"}, docs/FORMAT.md): a criterion
 * produces it, surgery consumes it, and a person can write one by hand. Layers not listed stay whole. Indices are
 * those of the original model. Provenance fields are informational except {@link #modelHash}, which
 * {@link #checkModel} compares.
 *
 * @param criterion criterion name ("magnitude", "wanda-sp", "manual", ...)
 * @param criterionOptions criterion settings (e.g. {"norm": "l2"}), free-form; may be null
 * @param ratio requested fraction of prunable parameters removed, or null (hand-written)
 * @param targets what the plan may cut: any of "heads", "channels", "layers"; "layers" also permits a layer to
 *                lose every head or every channel
 * @param allocation allocation used ("uniform", "global", ...), or null
 * @param calibration calibration data used, or null (magnitude needs none)
 * @param seed random seed, or null
 * @param modelHash {@link ModelHash} of the model the plan was made for, or null (then not checked)
 * @param toolVersion Lopper version that wrote the plan
 * @param removedLayers original indices of the layers removed
 * @param layers per-layer cuts, ascending by layer, at most one per layer
 * @param result the counts the plan achieved, or null; informational, recomputed on use
 * @param settings the settings the run used and where each came from (paper defaults or the user), or null;
 *                 informational (docs/FORMAT.md)
 * @param hidden the residual-stream (hidden-dimension) channels cut from every layer, the embeddings, the norms and
 *               the LM head, or null when the stream stays whole
 */
public record PruningPlan(String criterion, ObjectNode criterionOptions, Double ratio, List<String> targets,
                          String allocation, Calibration calibration, Long seed, String modelHash, String toolVersion,
                          List<Integer> removedLayers, List<LayerPlan> layers, Result result,
                          ObjectNode settings, HiddenPlan hidden) {

    /** The format tag this code reads and writes. */
    public static final String FORMAT = "lopper-plan/1";
    /** What every plan format version starts with (how a file Lopper wrote is recognised). */
    public static final String FORMAT_PREFIX = "lopper-plan/";
    public static final List<String> TARGETS = List.of("heads", "channels", "layers", "hidden", "sublayers");

    /** {@link HiddenPlan#norm()}: the RMSNorm weights are sliced as they are (Minitron, Sheared-LLaMA). */
    public static final String NORM_KEEP = "keep";
    /**
     * {@link HiddenPlan#norm()}: every hidden-size RMSNorm weight is multiplied by {@code sqrt(d / d_kept)} and
     * {@code rms_norm_eps} by {@code d / d_kept}, so that the pruned model equals the dense model with the removed
     * channels zeroed (docs/PRUNING.md, "Hidden dimension").
     */
    public static final String NORM_RESCALE = "rescale";

    /**
     * Residual-stream channels cut (indices of the original hidden dimension; kept or removed, never both) and how
     * the RMSNorm weights follow ({@link #NORM_KEEP} or {@link #NORM_RESCALE}; null = keep).
     */
    public record HiddenPlan(int[] keptChannels, int[] removedChannels, String norm) {
        public HiddenPlan {
            if (norm != null && !NORM_KEEP.equals(norm) && !NORM_RESCALE.equals(norm)) {
                throw new IllegalArgumentException("plan: field 'hidden.norm': found '" + norm + "', expected '" + NORM_KEEP
                        + "' or '" + NORM_RESCALE + "'");
            }
        }

        /** Whether the norms are rescaled (see {@link #NORM_RESCALE}). */
        public boolean rescale() {
            return NORM_RESCALE.equals(norm);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof HiddenPlan h && Arrays.equals(h.keptChannels, keptChannels)
                    && Arrays.equals(h.removedChannels, removedChannels) && java.util.Objects.equals(h.norm, norm);
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(keptChannels) * 31 + Arrays.hashCode(removedChannels);
        }
    }

    /** A plan without hidden-dimension cuts (the form before hidden pruning existed). */
    public PruningPlan(String criterion, ObjectNode criterionOptions, Double ratio, List<String> targets,
                       String allocation, Calibration calibration, Long seed, String modelHash, String toolVersion,
                       List<Integer> removedLayers, List<LayerPlan> layers, Result result, ObjectNode settings) {
        this(criterion, criterionOptions, ratio, targets, allocation, calibration, seed, modelHash, toolVersion,
                removedLayers, layers, result, settings, null);
    }

    /** This plan cutting the hidden dimension as {@code h} says (null: not at all). */
    public PruningPlan withHidden(HiddenPlan h) {
        return new PruningPlan(criterion, criterionOptions, ratio, targets, allocation, calibration, seed, modelHash,
                toolVersion, removedLayers, layers, result, settings, h);
    }

    /**
     * The residual-stream channels kept, ascending (all of them when the plan cuts none), validated against
     * {@code config}.
     */
    public int[] keptHidden(ModelConfig config) {
        if (hidden == null) {
            return LayerSelection.range(config.hiddenSize());
        }
        int[] kept = keptOf("plan: field 'hidden': ", "Channels", hidden.keptChannels(), hidden.removedChannels(),
                config.hiddenSize(), "hidden channel");
        if (kept.length == 0) {
            throw new IllegalArgumentException("plan: field 'hidden': removes every one of the " + config.hiddenSize()
                    + " hidden channels; keep at least one");
        }
        return kept;
    }

    /**
     * @param file calibration text file as given
     * @param samples sequences drawn
     * @param seqLen tokens per sequence
     */
    public record Calibration(String file, int samples, int seqLen) {
    }

    /**
     * Parameter counts of the plan applied to its model.
     *
     * @param achievedRatio removed / prunable parameters (the "ratio" the user asked for)
     * @param requestedRatio the ratio asked for, or null (a hand-written or applied plan)
     * @param shortfall when the achieved ratio is more than {@link #RATIO_TOLERANCE} from the requested one: one line
     *                  saying so and why; else null
     */
    public record Result(long paramsBefore, long paramsAfter, long prunableParams, long removedParams,
                         double achievedRatio, Double requestedRatio, String shortfall) {
        /** A result without a requested ratio. */
        public Result(long paramsBefore, long paramsAfter, long prunableParams, long removedParams, double achievedRatio) {
            this(paramsBefore, paramsAfter, prunableParams, removedParams, achievedRatio, null, null);
        }

        /** This result with the requested ratio beside the achieved one, and the reason when they differ. */
        public Result withRequested(Double requested, String why) {
            return new Result(paramsBefore, paramsAfter, prunableParams, removedParams, achievedRatio, requested, why);
        }
    }

    /** How far the achieved ratio may be from the requested one before the run says so ({@link Result#shortfall}). */
    public static final double RATIO_TOLERANCE = 0.02;

    /**
     * Cuts in one layer. For each of KV groups, query heads and channels at most one of kept/removed is set;
     * both null means all kept. When {@code keptKvGroups} and {@code removedKvGroups} are both null but heads are
     * given, the kept groups are those that keep at least one query head.
     */
    public record LayerPlan(int layer, int[] keptKvGroups, int[] removedKvGroups, int[] keptHeads, int[] removedHeads,
                            int[] keptChannels, int[] removedChannels) {
        /** The usual form: kept lists (null = all). */
        public static LayerPlan kept(int layer, int[] kvGroups, int[] heads, int[] channels) {
            return new LayerPlan(layer, kvGroups, null, heads, null, channels, null);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof LayerPlan p && p.layer == layer && Arrays.equals(p.keptKvGroups, keptKvGroups)
                    && Arrays.equals(p.removedKvGroups, removedKvGroups) && Arrays.equals(p.keptHeads, keptHeads)
                    && Arrays.equals(p.removedHeads, removedHeads) && Arrays.equals(p.keptChannels, keptChannels)
                    && Arrays.equals(p.removedChannels, removedChannels);
        }

        @Override
        public int hashCode() {
            return layer * 31 + Arrays.hashCode(keptHeads) + Arrays.hashCode(keptChannels);
        }
    }

    public PruningPlan {
        targets = targets == null ? List.of() : List.copyOf(targets);
        removedLayers = removedLayers == null ? List.of() : List.copyOf(removedLayers);
        layers = layers == null ? List.of() : List.copyOf(layers);
    }

    /** A plan that cuts nothing. */
    public static PruningPlan empty() {
        return new PruningPlan("none", null, 0.0, List.of(), null, null, null, null, toolVersionString(), List.of(), List.of(), null, null);
    }

    /** This plan with different per-layer cuts (what an allocation fills in). */
    public PruningPlan withCuts(List<Integer> removed, List<LayerPlan> layerPlans) {
        return new PruningPlan(criterion, criterionOptions, ratio, targets, allocation, calibration, seed, modelHash,
                toolVersion, removed, layerPlans, result, settings, hidden);
    }

    public PruningPlan withModelHash(String hash) {
        return new PruningPlan(criterion, criterionOptions, ratio, targets, allocation, calibration, seed, hash,
                toolVersion, removedLayers, layers, result, settings, hidden);
    }

    public PruningPlan withResult(Result r) {
        return new PruningPlan(criterion, criterionOptions, ratio, targets, allocation, calibration, seed, modelHash,
                toolVersion, removedLayers, layers, r, settings, hidden);
    }

    /** This plan with provenance replaced (criterion, options, ratio, targets, allocation, calibration, seed). */
    public PruningPlan withProvenance(String crit, ObjectNode options, Double r, List<String> tgts, String alloc,
                                      Calibration calib, Long sd) {
        return new PruningPlan(crit, options, r, tgts, alloc, calib, sd, modelHash, toolVersion, removedLayers, layers, result, settings, hidden);
    }

    /** This plan recording the run's settings (see {@link #settings()}). */
    public PruningPlan withSettings(ObjectNode s) {
        return new PruningPlan(criterion, criterionOptions, ratio, targets, allocation, calibration, seed, modelHash, toolVersion,
                removedLayers, layers, result, s, hidden);
    }

    /**
     * Whether a layer may lose all its heads or all its channels (only when layer or sublayer removal was asked
     * for): a layer without heads is its MLP alone, one without channels its attention alone.
     */
    public boolean allowsEmptyModules() {
        return targets.contains("layers") || targets.contains("sublayers");
    }

    // ---------------------------------------------------------------- validation

    /** Checks the plan against a model; throws {@link IllegalArgumentException} naming the problem. */
    public void validate(ModelConfig config) {
        resolve(config);
        keptHidden(config);
    }

    /** Fails when the plan names a model hash and {@code hash} differs. */
    public void checkModel(String hash) {
        if (modelHash != null && hash != null && !modelHash.equals(hash)) {
            throw new IllegalArgumentException("plan: field 'modelHash': found " + modelHash + ", but the model is " + hash
                    + " (the plan was made for a different model)");
        }
    }

    /**
     * Validates and expands the plan into one {@link dev.lopper.pruning.graph.LayerSelection} per original layer, in order.
     *
     * @throws IllegalArgumentException for a layer, group, head or channel that does not exist, a layer that would
     *                                  lose every head or channel (unless "layers" is a target), unequal GQA groups,
     *                                  or every layer removed
     */
    public List<LayerSelection> resolve(ModelConfig config) {
        int n = config.numLayers();
        for (String t : targets) {
            if (!TARGETS.contains(t)) {
                throw new IllegalArgumentException("plan: field 'targets': found '" + t + "', expected any of " + TARGETS);
            }
        }
        TreeSet<Integer> removed = new TreeSet<>();
        for (int l : removedLayers) {
            checkIndex("removedLayers", l, n, "layer");
            if (!removed.add(l)) {
                throw new IllegalArgumentException("plan: field 'removedLayers': layer " + l + " is listed twice");
            }
        }
        if (removed.size() == n && n > 0) {
            throw new IllegalArgumentException("plan: field 'removedLayers': removes all " + n + " layers; at least one must stay");
        }
        Map<Integer, LayerPlan> byLayer = new TreeMap<>();
        for (LayerPlan p : layers) {
            checkIndex("layers[].layer", p.layer(), n, "layer");
            if (byLayer.put(p.layer(), p) != null) {
                throw new IllegalArgumentException("plan: field 'layers': layer " + p.layer() + " is listed twice");
            }
            if (removed.contains(p.layer())) {
                throw new IllegalArgumentException("plan: layer " + p.layer() + " is in 'removedLayers' and also has cuts in 'layers'");
            }
        }
        List<LayerSelection> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            LayerShape s = config.layer(i);
            if (removed.contains(i)) {
                out.add(LayerSelection.dropped(i));
            } else if (!byLayer.containsKey(i)) {
                out.add(LayerSelection.whole(i, s));
            } else {
                out.add(resolveLayer(byLayer.get(i), s));
            }
        }
        return out;
    }

    private LayerSelection resolveLayer(LayerPlan p, LayerShape s) {
        String at = "plan: layer " + p.layer() + ": ";
        int[] heads = keptOf(at, "Heads", p.keptHeads(), p.removedHeads(), s.numHeads(), "query head");
        int[] groups;
        if (p.keptKvGroups() == null && p.removedKvGroups() == null) {
            // groups follow the kept heads: a group with no kept query head goes
            int gs = Math.max(1, s.groupSize());
            groups = Arrays.stream(heads).map(h -> h / gs).distinct().toArray();
            if (p.keptHeads() == null && p.removedHeads() == null) {
                groups = LayerSelection.range(s.numKvHeads());
            }
        } else {
            groups = keptOf(at, "KvGroups", p.keptKvGroups(), p.removedKvGroups(), s.numKvHeads(), "KV group");
            if (p.keptHeads() == null && p.removedHeads() == null) {
                // heads follow the kept groups: a group keeps all its query heads
                int gs = s.groupSize();
                heads = Arrays.stream(groups).flatMap(g -> Arrays.stream(LayerSelection.range(gs)).map(r -> g * gs + r)).toArray();
            }
        }
        int gs = s.groupSize();
        Map<Integer, Integer> perGroup = new LinkedHashMap<>();
        for (int g : groups) {
            perGroup.put(g, 0);
        }
        for (int h : heads) {
            int g = gs == 0 ? 0 : h / gs;
            if (!perGroup.containsKey(g)) {
                throw new IllegalArgumentException(at + "query head " + h + " is kept but its KV group " + g + " is removed");
            }
            perGroup.merge(g, 1, Integer::sum);
        }
        if (perGroup.values().stream().distinct().count() > 1) {
            throw new IllegalArgumentException(at + "kept query heads per KV group differ " + perGroup
                    + "; every KV group of a layer must keep the same number of query heads (a valid GQA layer)");
        }
        int[] channels = keptOf(at, "Channels", p.keptChannels(), p.removedChannels(), s.intermediateSize(), "MLP channel");
        if (!allowsEmptyModules()) {
            if (heads.length == 0 && s.numHeads() > 0) {
                throw new IllegalArgumentException(at + "removes every attention head (" + s.numHeads()
                        + "); keep at least one KV group, or remove the layer ('removedLayers', target 'layers')");
            }
            if (channels.length == 0 && s.intermediateSize() > 0) {
                throw new IllegalArgumentException(at + "removes every MLP channel (" + s.intermediateSize()
                        + "); keep at least one, or remove the layer ('removedLayers', target 'layers')");
            }
        }
        return new LayerSelection(p.layer(), false, groups, heads, channels);
    }

    /** Kept indices from a kept list or a removed list (never both), validated, ascending. */
    private static int[] keptOf(String at, String what, int[] kept, int[] removed, int count, String unit) {
        if (kept != null && removed != null) {
            throw new IllegalArgumentException(at + "both 'kept" + what + "' and 'removed" + what + "' given; use one");
        }
        if (kept == null && removed == null) {
            return LayerSelection.range(count);
        }
        String field = (kept != null ? "kept" : "removed") + what;
        boolean[] seen = new boolean[count];
        for (int i : kept != null ? kept : removed) {
            if (i < 0 || i >= count) {
                throw new IllegalArgumentException(at + "field '" + field + "': " + unit + " " + i + " does not exist (the layer has "
                        + count + ", indices 0.." + (count - 1) + ")");
            }
            if (seen[i]) {
                throw new IllegalArgumentException(at + "field '" + field + "': " + unit + " " + i + " is listed twice");
            }
            seen[i] = true;
        }
        boolean keep = kept != null;
        return Arrays.stream(LayerSelection.range(count)).filter(i -> seen[i] == keep).toArray();
    }

    private static void checkIndex(String field, int i, int n, String unit) {
        if (i < 0 || i >= n) {
            throw new IllegalArgumentException("plan: field '" + field + "': " + unit + " " + i + " does not exist (the model has "
                    + n + " layers, indices 0.." + (n - 1) + ")");
        }
    }

    // ---------------------------------------------------------------- JSON (codec: PlanJson)

    /** The plan as JSON (docs/FORMAT.md); see {@link PlanJson}. */
    public ObjectNode toJson() {
        return PlanJson.toJson(this);
    }

    /** Writes the plan atomically; see {@link PlanJson#save}. */
    public void save(Path file) throws IOException {
        PlanJson.save(this, file);
    }

    /** Pretty JSON with index lists on one line each. */
    public String toJsonString() {
        return PlanJson.toJsonString(this);
    }

    /** Reads and checks the structure of a plan file (indices are checked by {@link #validate}). */
    public static PruningPlan load(Path file) {
        return PlanJson.load(file);
    }

    /** Parses a plan; {@code file} only names the source in errors. */
    public static PruningPlan parse(JsonNode root, Path file) {
        return PlanJson.parse(root, file);
    }

    /** Lopper's version, for provenance. */
    public static String toolVersionString() {
        return "lopper " + dev.lopper.model.LopperVersion.get();
    }
}
