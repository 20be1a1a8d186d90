package dev.lopper.cli;

import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.training.job.ScheduleMethods;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * Which method-specific options of {@code lopper prune} each {@code --method} takes: the one place the CLI asks, so
 * that no command compares method names itself. An option given on the command line travels in
 * {@code PruneRequest.criterionOptions} under its key ({@link #KEYS}); the criteria declare the keys they take in
 * their own registry ({@link Criteria#options}), the training-aware methods in theirs ({@link ScheduleMethods}). A
 * method neither registry knows takes any key (it refuses unknown ones itself).
 */
final class MethodOptions {
    /** Every method-specific option of {@code lopper prune} and its key in {@code PruneRequest.criterionOptions}. */
    static final Map<String, String> KEYS = keys();

    private MethodOptions() {
    }

    private static Map<String, String> keys() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("--norm", "norm");
        m.put("--flap-metric", "metric");
        m.put("--bias-compensation", "compensation");
        m.put("--wanda-order", "order");
        m.put("--taylor", "taylor");
        m.put("--llm-pruner-layers", "layers");
        m.put("--grouping", "grouping");
        m.put("--gblm-scale", "scale");
        m.put("--reg-lr", "reg-lr");
        m.put("--prompt", "prompt");
        m.put("--compresso-ending", "ending");
        m.put("--prune-freq", "prune-freq");
        m.put("--step-ratio", "step-ratio");
        m.put("--criterion", "criterion");
        return java.util.Collections.unmodifiableMap(m);
    }

    /** The keys {@code method} takes, or null when it takes any (a method neither registry declares). */
    static Set<String> accepted(String method) {
        ScheduleMethods.Entry e = ScheduleMethods.get(method);
        return e != null ? e.options() : Criteria.options(method);
    }

    /** The methods whose options include {@code key}, sorted. */
    static Set<String> methodsTaking(String key) {
        Set<String> all = new TreeSet<>(Criteria.names());
        all.addAll(ScheduleMethods.names());
        all.removeIf(m -> accepted(m) == null || !accepted(m).contains(key));
        return all;
    }

    /**
     * Refuses, in one line, the first key of {@code given} (request option keys, {@link #KEYS}'s values) that
     * {@code method} does not take: "--reg-lr is an option of --method compresso, not of magnitude".
     */
    static void check(String method, Set<String> given) {
        Set<String> ok = accepted(method);
        if (ok == null) {
            return;
        }
        for (Map.Entry<String, String> e : KEYS.entrySet()) {
            if (given.contains(e.getValue()) && !ok.contains(e.getValue())) {
                throw new IllegalArgumentException(e.getKey() + " is an option of --method " + String.join(", ", methodsTaking(e.getValue()))
                        + ", not of " + method);
            }
        }
    }
}
