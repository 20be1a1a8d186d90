package dev.lopper.cli;

import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.training.method.AdaptPrunerMethod;
import dev.lopper.training.method.Bip;
import dev.lopper.training.method.EfficientLlm;
import dev.lopper.training.method.LoraPrune;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * Which method-specific options of {@code lopper prune} each {@code --method} takes: the one place the CLI asks, so
 * that no command compares method names itself. An option given on the command line travels in
 * {@code PruneRequest.criterionOptions} under its key ({@link #KEYS}); the criteria declare the keys they take in
 * their own registry ({@link Criteria#options}), the training-aware methods in {@link #TRAINING_AWARE} here (their
 * registry, {@code dev.lopper.training.job.ScheduleMethods}, does not say yet). A method neither registry knows
 * takes any key (it refuses unknown ones itself).
 */
final class MethodOptions {
    /** Every method-specific option of {@code lopper prune} and its key in {@code PruneRequest.criterionOptions}. */
    static final Map<String, String> KEYS = keys();

    /** The keys each training-aware method takes (a method missing here takes any). */
    private static final Map<String, Set<String>> TRAINING_AWARE = trainingAware();

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
        m.put("--prune-freq", "prune-freq");
        m.put("--step-ratio", "step-ratio");
        m.put("--criterion", "criterion");
        return java.util.Collections.unmodifiableMap(m);
    }

    private static Map<String, Set<String>> trainingAware() {
        Map<String, Set<String>> m = new LinkedHashMap<>();
        m.put(LoraPrune.NAME, Set.of("prune-freq"));
        // adapt-pruner hands every other key to its within-layer criterion (--criterion), which checks them
        Set<String> adapt = new TreeSet<>(Set.of("step-ratio", "criterion"));
        for (String c : Criteria.names()) {
            Set<String> o = Criteria.options(c);
            if (o != null) {
                adapt.addAll(o);
            }
        }
        m.put(AdaptPrunerMethod.NAME, Set.copyOf(adapt));
        m.put("compresso", Set.of("reg-lr", "prompt")); // CompressoSchedule.NAME, not public
        m.put(EfficientLlm.NAME, Set.of());
        m.put(Bip.NAME, Set.of());
        return m;
    }

    /** The keys {@code method} takes, or null when it takes any (a method neither registry declares). */
    static Set<String> accepted(String method) {
        Set<String> t = TRAINING_AWARE.get(method);
        return t != null ? t : Criteria.options(method);
    }

    /** The training-aware methods this table describes (a test holds it to {@code ScheduleMethods.names()}). */
    static Set<String> trainingAwareNames() {
        return TRAINING_AWARE.keySet();
    }

    /** The methods whose options include {@code key}, sorted. */
    static Set<String> methodsTaking(String key) {
        Set<String> all = new TreeSet<>(Criteria.names());
        all.addAll(TRAINING_AWARE.keySet());
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
