package dev.lopper.pruning;

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
 */
public record PruningPlan(String criterion, ObjectNode criterionOptions, Double ratio, List<String> targets,
                          String allocation, Calibration calibration, Long seed, String modelHash, String toolVersion,
                          List<Integer> removedLayers, List<LayerPlan> layers, Result result) {

    /** The format tag this code reads and writes. */
    public static final String FORMAT = "lopper-plan/1";
    /** What every plan format version starts with (how a file Lopper wrote is recognised). */
    public static final String FORMAT_PREFIX = "lopper-plan/";
    public static final List<String> TARGETS = List.of("heads", "channels", "layers");
    private static final ObjectMapper JSON = new ObjectMapper();

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
     */
    public record Result(long paramsBefore, long paramsAfter, long prunableParams, long removedParams,
                         double achievedRatio) {
    }

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
        return new PruningPlan("none", null, 0.0, List.of(), null, null, null, null, toolVersionString(), List.of(), List.of(), null);
    }

    /** This plan with different per-layer cuts (what an allocation fills in). */
    public PruningPlan withCuts(List<Integer> removed, List<LayerPlan> layerPlans) {
        return new PruningPlan(criterion, criterionOptions, ratio, targets, allocation, calibration, seed, modelHash,
                toolVersion, removed, layerPlans, result);
    }

    public PruningPlan withModelHash(String hash) {
        return new PruningPlan(criterion, criterionOptions, ratio, targets, allocation, calibration, seed, hash,
                toolVersion, removedLayers, layers, result);
    }

    public PruningPlan withResult(Result r) {
        return new PruningPlan(criterion, criterionOptions, ratio, targets, allocation, calibration, seed, modelHash,
                toolVersion, removedLayers, layers, r);
    }

    /** This plan with provenance replaced (criterion, options, ratio, targets, allocation, calibration, seed). */
    public PruningPlan withProvenance(String crit, ObjectNode options, Double r, List<String> tgts, String alloc,
                                      Calibration calib, Long sd) {
        return new PruningPlan(crit, options, r, tgts, alloc, calib, sd, modelHash, toolVersion, removedLayers, layers, result);
    }

    /** Whether a layer may lose all its heads or all its channels (only when layer removal was asked for). */
    public boolean allowsEmptyModules() {
        return targets.contains("layers");
    }

    // ---------------------------------------------------------------- validation

    /** Checks the plan against a model; throws {@link IllegalArgumentException} naming the problem. */
    public void validate(ModelConfig config) {
        resolve(config);
    }

    /** Fails when the plan names a model hash and {@code hash} differs. */
    public void checkModel(String hash) {
        if (modelHash != null && hash != null && !modelHash.equals(hash)) {
            throw new IllegalArgumentException("plan: field 'modelHash': found " + modelHash + ", but the model is " + hash
                    + " (the plan was made for a different model)");
        }
    }

    /**
     * Validates and expands the plan into one {@link LayerSelection} per original layer, in order.
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

    // ---------------------------------------------------------------- JSON

    /** The plan as JSON (docs/FORMAT.md). */
    public ObjectNode toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.put("format", FORMAT);
        o.put("toolVersion", toolVersion);
        o.put("modelHash", modelHash);
        o.put("criterion", criterion);
        if (criterionOptions != null) {
            o.set("criterionOptions", criterionOptions.deepCopy());
        }
        if (ratio != null) {
            o.put("ratio", ratio);
        }
        ArrayNode t = o.putArray("targets");
        targets.forEach(t::add);
        if (allocation != null) {
            o.put("allocation", allocation);
        }
        if (calibration != null) {
            ObjectNode c = o.putObject("calibration");
            c.put("file", calibration.file());
            c.put("samples", calibration.samples());
            c.put("seqLen", calibration.seqLen());
        } else {
            o.putNull("calibration");
        }
        if (seed != null) {
            o.put("seed", seed);
        }
        ArrayNode rl = o.putArray("removedLayers");
        removedLayers.forEach(rl::add);
        ArrayNode ls = o.putArray("layers");
        for (LayerPlan p : layers) {
            ObjectNode lo = ls.addObject();
            lo.put("layer", p.layer());
            putInts(lo, "keptKvGroups", p.keptKvGroups());
            putInts(lo, "removedKvGroups", p.removedKvGroups());
            putInts(lo, "keptHeads", p.keptHeads());
            putInts(lo, "removedHeads", p.removedHeads());
            putInts(lo, "keptChannels", p.keptChannels());
            putInts(lo, "removedChannels", p.removedChannels());
        }
        if (result != null) {
            ObjectNode r = o.putObject("result");
            r.put("paramsBefore", result.paramsBefore());
            r.put("paramsAfter", result.paramsAfter());
            r.put("prunableParams", result.prunableParams());
            r.put("removedParams", result.removedParams());
            r.put("achievedRatio", result.achievedRatio());
        }
        return o;
    }

    private static void putInts(ObjectNode o, String name, int[] v) {
        if (v != null) {
            ArrayNode a = o.putArray(name);
            for (int i : v) {
                a.add(i);
            }
        }
    }

    /** Writes the plan atomically (temporary file in the same directory, then a move). */
    public void save(Path file) throws IOException {
        Path target = file.toAbsolutePath();
        Files.createDirectories(target.getParent());
        // not createTempFile: its 0600 would outlive the rename; a plain create follows the user's umask
        Path tmp = target.resolveSibling("." + target.getFileName() + ".tmp-" + ProcessHandle.current().pid() + "-" + System.nanoTime());
        try {
            Files.writeString(tmp, toJsonString() + "\n", java.nio.file.StandardOpenOption.CREATE_NEW, java.nio.file.StandardOpenOption.WRITE);
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** Pretty JSON with index lists on one line each. */
    public String toJsonString() {
        try {
            return JSON.writer(new CompactArrays()).writeValueAsString(toJson());
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Reads and checks the structure of a plan file (indices are checked by {@link #validate}). */
    public static PruningPlan load(Path file) {
        if (!Files.isRegularFile(file)) {
            throw ModelFormatException.file(file, "plan file not found");
        }
        JsonNode root;
        try {
            root = JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw ModelFormatException.file(file, "not valid JSON: " + e.getMessage().lines().findFirst().orElse(""));
        }
        return parse(root, file);
    }

    /** Parses a plan; {@code file} only names the source in errors. */
    public static PruningPlan parse(JsonNode root, Path file) {
        if (root == null || !root.isObject()) {
            throw ModelFormatException.file(file, "expected a JSON object (a Lopper pruning plan)");
        }
        Reader r = new Reader(file, "");
        JsonNode format = root.get("format");
        if (format == null || !format.isTextual() || !format.textValue().equals(FORMAT)) {
            throw ModelFormatException.field(file, "format", format == null ? "nothing" : format, "\"" + FORMAT + "\"");
        }
        for (Iterator<String> it = root.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!List.of("format", "toolVersion", "modelHash", "criterion", "criterionOptions", "ratio", "targets",
                    "allocation", "calibration", "seed", "removedLayers", "layers", "result").contains(f)) {
                throw ModelFormatException.field(file, f, "an unknown field", "only the fields of docs/FORMAT.md (lopper-plan/1)");
            }
        }
        Double ratio = r.optDouble(root, "ratio");
        if (ratio != null && !(ratio >= 0 && ratio < 1)) {
            throw ModelFormatException.field(file, "ratio", ratio, "a number in [0, 1)");
        }
        List<String> targets = new ArrayList<>();
        JsonNode t = root.get("targets");
        if (t != null && !t.isNull()) {
            if (!t.isArray()) {
                throw ModelFormatException.field(file, "targets", t, "an array of \"heads\", \"channels\", \"layers\"");
            }
            for (JsonNode x : t) {
                if (!x.isTextual() || !TARGETS.contains(x.textValue())) {
                    throw ModelFormatException.field(file, "targets", x, "one of " + TARGETS);
                }
                targets.add(x.textValue());
            }
        }
        Calibration calib = null;
        JsonNode c = root.get("calibration");
        if (c != null && !c.isNull()) {
            if (!c.isObject()) {
                throw ModelFormatException.field(file, "calibration", c, "an object {file, samples, seqLen} or null");
            }
            Reader cr = new Reader(file, "calibration.");
            calib = new Calibration(cr.optString(c, "file"), cr.intValue(c, "samples"), cr.intValue(c, "seqLen"));
        }
        JsonNode opts = root.get("criterionOptions");
        if (opts != null && !opts.isNull() && !opts.isObject()) {
            throw ModelFormatException.field(file, "criterionOptions", opts, "an object or null");
        }
        List<Integer> removed = new ArrayList<>();
        for (int i : r.ints(root, "removedLayers")) {
            removed.add(i);
        }
        List<LayerPlan> layers = new ArrayList<>();
        JsonNode ls = root.get("layers");
        if (ls != null && !ls.isNull()) {
            if (!ls.isArray()) {
                throw ModelFormatException.field(file, "layers", ls.getNodeType(), "an array of per-layer cuts");
            }
            for (int i = 0; i < ls.size(); i++) {
                JsonNode l = ls.get(i);
                Reader lr = new Reader(file, "layers[" + i + "].");
                if (!l.isObject()) {
                    throw ModelFormatException.field(file, "layers[" + i + "]", l.getNodeType(), "an object");
                }
                for (Iterator<String> it = l.fieldNames(); it.hasNext(); ) {
                    String f = it.next();
                    if (!List.of("layer", "keptKvGroups", "removedKvGroups", "keptHeads", "removedHeads", "keptChannels",
                            "removedChannels").contains(f)) {
                        throw ModelFormatException.field(file, "layers[" + i + "]." + f, "an unknown field",
                                "layer, kept/removed KvGroups, Heads, Channels");
                    }
                }
                layers.add(new LayerPlan(lr.intValue(l, "layer"), lr.optInts(l, "keptKvGroups"), lr.optInts(l, "removedKvGroups"),
                        lr.optInts(l, "keptHeads"), lr.optInts(l, "removedHeads"), lr.optInts(l, "keptChannels"),
                        lr.optInts(l, "removedChannels")));
            }
        }
        Result result = null;
        JsonNode res = root.get("result");
        if (res != null && res.isObject()) {
            Reader rr = new Reader(file, "result.");
            result = new Result(rr.longValue(res, "paramsBefore"), rr.longValue(res, "paramsAfter"),
                    rr.longValue(res, "prunableParams"), rr.longValue(res, "removedParams"), rr.optDouble(res, "achievedRatio"));
        }
        Long seed = root.hasNonNull("seed") ? r.longValue(root, "seed") : null;
        return new PruningPlan(r.optString(root, "criterion"), opts != null && opts.isObject() ? (ObjectNode) opts.deepCopy() : null,
                ratio, targets, r.optString(root, "allocation"), calib, seed, r.optString(root, "modelHash"),
                r.optString(root, "toolVersion"), removed, layers, result);
    }

    /** Typed field access with errors naming file and field. */
    private record Reader(Path file, String prefix) {
        String optString(JsonNode o, String name) {
            JsonNode v = o.get(name);
            if (v == null || v.isNull()) {
                return null;
            }
            if (!v.isTextual()) {
                throw ModelFormatException.field(file, prefix + name, v, "a string");
            }
            return v.textValue();
        }

        Double optDouble(JsonNode o, String name) {
            JsonNode v = o.get(name);
            if (v == null || v.isNull()) {
                return null;
            }
            if (!v.isNumber()) {
                throw ModelFormatException.field(file, prefix + name, v, "a number");
            }
            return v.doubleValue();
        }

        long longValue(JsonNode o, String name) {
            JsonNode v = o.get(name);
            if (v == null || !v.isIntegralNumber()) {
                throw ModelFormatException.field(file, prefix + name, v == null ? "nothing" : v, "an integer");
            }
            return v.longValue();
        }

        int intValue(JsonNode o, String name) {
            JsonNode v = o.get(name);
            if (v == null || !v.isIntegralNumber() || !v.canConvertToInt()) {
                throw ModelFormatException.field(file, prefix + name, v == null ? "nothing" : v, "an integer");
            }
            return v.intValue();
        }

        int[] ints(JsonNode o, String name) {
            int[] v = optInts(o, name);
            return v == null ? new int[0] : v;
        }

        int[] optInts(JsonNode o, String name) {
            JsonNode v = o.get(name);
            if (v == null || v.isNull()) {
                return null;
            }
            if (!v.isArray()) {
                throw ModelFormatException.field(file, prefix + name, v.getNodeType(), "an array of integers");
            }
            int[] out = new int[v.size()];
            for (int i = 0; i < out.length; i++) {
                JsonNode x = v.get(i);
                if (!x.isIntegralNumber() || !x.canConvertToInt()) {
                    throw ModelFormatException.field(file, prefix + name + "[" + i + "]", x, "an integer");
                }
                out[i] = x.intValue();
            }
            return out;
        }
    }

    /** Lopper's version, for provenance. */
    public static String toolVersionString() {
        return "lopper " + dev.lopper.model.LopperVersion.get();
    }

    /** Pretty printer that keeps arrays of numbers on one line, so a plan of a 7B model stays readable. */
    private static final class CompactArrays extends com.fasterxml.jackson.core.util.DefaultPrettyPrinter {
        CompactArrays() {
            _arrayIndenter = com.fasterxml.jackson.core.util.DefaultPrettyPrinter.FixedSpaceIndenter.instance;
        }

        @Override
        public CompactArrays createInstance() {
            return new CompactArrays();
        }
    }
}
