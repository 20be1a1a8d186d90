package dev.lopper.pruning.criteria;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * Criteria by name ({@code --method}, {@code PruneRequest.criterion}). Each factory gets the criterion's options as
 * strings (e.g. {"norm": "l1"}); an option the criterion does not declare is refused. Adding a criterion is its own
 * class plus one {@code register} line here (docs/PRUNING.md, "Adding a criterion").
 *
 * <pre>{@code
 * Criterion c = Criteria.create("magnitude", Map.of("norm", "l1"));
 * }</pre>
 */
public final class Criteria {
    private static final Map<String, Function<Map<String, String>, Criterion>> FACTORIES = new LinkedHashMap<>();
    private static final Map<String, Set<String>> OPTIONS = new LinkedHashMap<>();

    static {
        register("magnitude", Set.of("norm"), o -> MagnitudeCriterion.of(o.get("norm")));
        register(WandaSpCriterion.NAME, Set.of("order"), o -> WandaSpCriterion.of(o.get("order")));
        register(FlapCriterion.NAME, Set.of("metric", "compensation"), o -> FlapCriterion.of(o.get("metric"), o.get("compensation")));
        register(CfspCriterion.NAME, Set.of(), o -> new CfspCriterion());
        register(LlmPrunerCriterion.NAME, Set.of("taylor", "grouping", "layers"),
                o -> LlmPrunerCriterion.of(o.get("taylor"), o.get("grouping"), o.get("layers")));
        register(GblmCriterion.NAME, Set.of("scale", "order"), o -> GblmCriterion.of(o.get("scale"), o.get("order")));
        register(BlockInfluenceCriterion.NAME, Set.of(), o -> new BlockInfluenceCriterion());
        register(LayerLossCriterion.NAME, Set.of(), o -> new LayerLossCriterion());
        register(AngularCriterion.NAME, Set.of(), o -> new AngularCriterion());
        register(MinitronCriterion.NAME, Set.of(), o -> new MinitronCriterion());
    }

    /** Registers {@code name} taking exactly the option keys {@code options}. */
    public static synchronized void register(String name, Set<String> options, Function<Map<String, String>, Criterion> factory) {
        FACTORIES.put(name, factory);
        OPTIONS.put(name, Set.copyOf(options));
    }

    /** The option keys {@code name} takes, or null when it accepts any. */
    public static synchronized Set<String> options(String name) {
        return OPTIONS.get(name);
    }

    private Criteria() {
    }

    /** Registers {@code name}, accepting any option keys. */
    public static synchronized void register(String name, Function<Map<String, String>, Criterion> factory) {
        FACTORIES.put(name, factory);
        OPTIONS.remove(name);
    }

    public static synchronized Set<String> names() {
        return Set.copyOf(FACTORIES.keySet());
    }

    /** The criterion {@code name} with {@code options}; an unknown name is an {@link IllegalArgumentException}. */
    public static Criterion create(String name, Map<String, String> options) {
        Function<Map<String, String>, Criterion> f;
        synchronized (Criteria.class) {
            f = FACTORIES.get(name);
        }
        if (f == null) {
            throw new IllegalArgumentException("--method " + name + ": expected one of " + names());
        }
        Set<String> known = options(name);
        for (String k : options.keySet()) {
            if (known != null && !known.contains(k)) {
                throw new IllegalArgumentException("--method " + name + " has no option '" + k + "'"
                        + (known.isEmpty() ? " (it takes none)" : " (it takes " + new java.util.TreeSet<>(known) + ")"));
            }
        }
        return f.apply(options);
    }
}
