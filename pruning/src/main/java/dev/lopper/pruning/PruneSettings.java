package dev.lopper.pruning;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The settings a pruning run used, each with where it came from: {@code "paper"} (the criterion's
 * {@code Defaults}), {@code "user"} (the request) or {@code "plan"} (an applied plan). Recorded in the plan's
 * {@code settings} and printed by {@code lopper prune}.
 *
 * <pre>{@code
 * result.settings().get("allocation");   // Setting[value=adaptive, from=paper]
 * }</pre>
 *
 * @param values setting name -> value and origin, in a fixed order (criterion, options, allocation, samples,
 *               seq_len, head_unit, keep_first, keep_last)
 * @param defaultsSource where the criterion's defaults come from (script/file of its official code)
 */
public record PruneSettings(Map<String, Setting> values, String defaultsSource) {
    /** One setting's value and origin ("paper", "user" or "plan"). */
    public record Setting(Object value, String from) {
    }

    public PruneSettings {
        values = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(values));
    }

    public Setting get(String name) {
        return values.get(name);
    }

    /** The plan's {@code settings} object: {"allocation": {"value": "adaptive", "from": "paper"}, ...}. */
    public ObjectNode toJson() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        for (Map.Entry<String, Setting> e : values.entrySet()) {
            ObjectNode s = o.putObject(e.getKey());
            s.set("value", new ObjectMapper().valueToTree(e.getValue().value()));
            s.put("from", e.getValue().from());
        }
        if (defaultsSource != null) {
            o.put("defaults_source", defaultsSource);
        }
        return o;
    }

    /** One line per setting: "allocation  adaptive  (paper)". */
    public String describe() {
        StringBuilder b = new StringBuilder();
        for (Map.Entry<String, Setting> e : values.entrySet()) {
            b.append(String.format("  %-12s %s (%s)%n", e.getKey(), e.getValue().value(), e.getValue().from()));
        }
        return b.toString();
    }
}
