package dev.lopper.pruning.plan;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.io.AtomicFile;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/**
 * The JSON codec of {@link PruningPlan} ({@code "format": "lopper-plan/1"}, docs/FORMAT.md), kept apart from the
 * value type so that the plan stays a plain record and the file format has one place.
 *
 * <pre>{@code
 * PlanJson.save(plan, Path.of("plan.json"));
 * PruningPlan again = PlanJson.load(Path.of("plan.json"));
 * }</pre>
 */
public final class PlanJson {
    private static final ObjectMapper JSON = new ObjectMapper();

    private PlanJson() {
    }

        /** The plan as JSON (docs/FORMAT.md). */
    public static ObjectNode toJson(PruningPlan plan) {
        ObjectNode o = JSON.createObjectNode();
        o.put("format", PruningPlan.FORMAT);
        o.put("toolVersion", plan.toolVersion());
        o.put("modelHash", plan.modelHash());
        o.put("criterion", plan.criterion());
        if (plan.criterionOptions() != null) {
            o.set("criterionOptions", plan.criterionOptions().deepCopy());
        }
        if (plan.ratio() != null) {
            o.put("ratio", plan.ratio());
        }
        ArrayNode t = o.putArray("targets");
        plan.targets().forEach(t::add);
        if (plan.allocation() != null) {
            o.put("allocation", plan.allocation());
        }
        if (plan.calibration() != null) {
            ObjectNode c = o.putObject("calibration");
            c.put("file", plan.calibration().file());
            c.put("samples", plan.calibration().samples());
            c.put("seqLen", plan.calibration().seqLen());
        } else {
            o.putNull("calibration");
        }
        if (plan.seed() != null) {
            o.put("seed", plan.seed());
        }
        ArrayNode rl = o.putArray("removedLayers");
        plan.removedLayers().forEach(rl::add);
        ArrayNode ls = o.putArray("layers");
        for (PruningPlan.LayerPlan p : plan.layers()) {
            ObjectNode lo = ls.addObject();
            lo.put("layer", p.layer());
            putInts(lo, "keptKvGroups", p.keptKvGroups());
            putInts(lo, "removedKvGroups", p.removedKvGroups());
            putInts(lo, "keptHeads", p.keptHeads());
            putInts(lo, "removedHeads", p.removedHeads());
            putInts(lo, "keptChannels", p.keptChannels());
            putInts(lo, "removedChannels", p.removedChannels());
        }
        if (plan.hidden() != null) {
            ObjectNode h = o.putObject("hidden");
            putInts(h, "keptChannels", plan.hidden().keptChannels());
            putInts(h, "removedChannels", plan.hidden().removedChannels());
            h.put("norm", plan.hidden().norm() == null ? PruningPlan.NORM_KEEP : plan.hidden().norm());
        }
        if (plan.settings() != null) {
            o.set("settings", plan.settings().deepCopy());
        }
        if (plan.result() != null) {
            ObjectNode r = o.putObject("result");
            r.put("paramsBefore", plan.result().paramsBefore());
            r.put("paramsAfter", plan.result().paramsAfter());
            r.put("prunableParams", plan.result().prunableParams());
            r.put("removedParams", plan.result().removedParams());
            r.put("achievedRatio", plan.result().achievedRatio());
            if (plan.result().requestedRatio() != null) {
                r.put("requestedRatio", plan.result().requestedRatio());
            }
            if (plan.result().shortfall() != null) {
                r.put("shortfall", plan.result().shortfall());
            }
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
    public static void save(PruningPlan plan, Path file) throws IOException {
        Files.createDirectories(file.toAbsolutePath().getParent());
        AtomicFile.writeString(file, toJsonString(plan) + "\n");
    }

    /** Pretty JSON with index lists on one line each. */
    public static String toJsonString(PruningPlan plan) {
        try {
            return JSON.writer(new CompactArrays()).writeValueAsString(toJson(plan));
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Reads and checks the structure of a plan file (indices are checked by {@link PruningPlan#validate}). */
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
        if (format == null || !format.isTextual() || !format.textValue().equals(PruningPlan.FORMAT)) {
            throw ModelFormatException.field(file, "format", format == null ? "nothing" : format, "\"" + PruningPlan.FORMAT + "\"");
        }
        for (Iterator<String> it = root.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!List.of("format", "toolVersion", "modelHash", "criterion", "criterionOptions", "ratio", "targets",
                    "allocation", "calibration", "seed", "removedLayers", "layers", "hidden", "result", "settings").contains(f)) {
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
                throw ModelFormatException.field(file, "targets", t, "an array of " + PruningPlan.TARGETS);
            }
            for (JsonNode x : t) {
                if (!x.isTextual() || !PruningPlan.TARGETS.contains(x.textValue())) {
                    throw ModelFormatException.field(file, "targets", x, "one of " + PruningPlan.TARGETS);
                }
                targets.add(x.textValue());
            }
        }
        PruningPlan.Calibration calib = null;
        JsonNode c = root.get("calibration");
        if (c != null && !c.isNull()) {
            if (!c.isObject()) {
                throw ModelFormatException.field(file, "calibration", c, "an object {file, samples, seqLen} or null");
            }
            Reader cr = new Reader(file, "calibration.");
            calib = new PruningPlan.Calibration(cr.optString(c, "file"), cr.intValue(c, "samples"), cr.intValue(c, "seqLen"));
        }
        JsonNode opts = root.get("criterionOptions");
        if (opts != null && !opts.isNull() && !opts.isObject()) {
            throw ModelFormatException.field(file, "criterionOptions", opts, "an object or null");
        }
        List<Integer> removed = new ArrayList<>();
        for (int i : r.ints(root, "removedLayers")) {
            removed.add(i);
        }
        List<PruningPlan.LayerPlan> layers = new ArrayList<>();
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
                layers.add(new PruningPlan.LayerPlan(lr.intValue(l, "layer"), lr.optInts(l, "keptKvGroups"), lr.optInts(l, "removedKvGroups"),
                        lr.optInts(l, "keptHeads"), lr.optInts(l, "removedHeads"), lr.optInts(l, "keptChannels"),
                        lr.optInts(l, "removedChannels")));
            }
        }
        PruningPlan.Result result = null;
        JsonNode res = root.get("result");
        if (res != null && res.isObject()) {
            Reader rr = new Reader(file, "result.");
            result = new PruningPlan.Result(rr.longValue(res, "paramsBefore"), rr.longValue(res, "paramsAfter"),
                    rr.longValue(res, "prunableParams"), rr.longValue(res, "removedParams"), rr.optDouble(res, "achievedRatio"),
                    rr.optDouble(res, "requestedRatio"), rr.optString(res, "shortfall"));
        }
        PruningPlan.HiddenPlan hidden = null;
        JsonNode hn = root.get("hidden");
        if (hn != null && !hn.isNull()) {
            if (!hn.isObject()) {
                throw ModelFormatException.field(file, "hidden", hn.getNodeType(), "an object {keptChannels or removedChannels, norm}");
            }
            for (Iterator<String> it = hn.fieldNames(); it.hasNext(); ) {
                String f = it.next();
                if (!List.of("keptChannels", "removedChannels", "norm").contains(f)) {
                    throw ModelFormatException.field(file, "hidden." + f, "an unknown field", "keptChannels, removedChannels, norm");
                }
            }
            Reader hr = new Reader(file, "hidden.");
            String norm = hr.optString(hn, "norm");
            if (norm != null && !PruningPlan.NORM_KEEP.equals(norm) && !PruningPlan.NORM_RESCALE.equals(norm)) {
                throw ModelFormatException.field(file, "hidden.norm", "'" + norm + "'", "'" + PruningPlan.NORM_KEEP + "' or '"
                        + PruningPlan.NORM_RESCALE + "'");
            }
            hidden = new PruningPlan.HiddenPlan(hr.optInts(hn, "keptChannels"), hr.optInts(hn, "removedChannels"), norm);
        }
        JsonNode settings = root.get("settings");
        if (settings != null && !settings.isNull() && !settings.isObject()) {
            throw ModelFormatException.field(file, "settings", settings, "an object or null");
        }
        Long seed = root.hasNonNull("seed") ? r.longValue(root, "seed") : null;
        return new PruningPlan(r.optString(root, "criterion"), opts != null && opts.isObject() ? (ObjectNode) opts.deepCopy() : null,
                ratio, targets, r.optString(root, "allocation"), calib, seed, r.optString(root, "modelHash"),
                r.optString(root, "toolVersion"), removed, layers, result,
                settings != null && settings.isObject() ? (ObjectNode) settings.deepCopy() : null, hidden);
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
