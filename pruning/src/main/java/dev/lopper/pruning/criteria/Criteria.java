package dev.lopper.pruning.criteria;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * Criteria by name, for the CLI ({@code --method}). Each factory gets the criterion's options as strings
 * (e.g. {"norm": "l1"}); criteria added later register themselves here.
 */
public final class Criteria {
    private static final Map<String, Function<Map<String, String>, Criterion>> FACTORIES = new LinkedHashMap<>();

    static {
        register("magnitude", o -> MagnitudeCriterion.of(o.get("norm")));
        register(WandaSpCriterion.NAME, o -> new WandaSpCriterion());
        register(FlapCriterion.NAME, o -> FlapCriterion.of(o.get("metric"), o.get("compensation")));
        register(CfspCriterion.NAME, o -> new CfspCriterion());
    }

    private Criteria() {
    }

    public static synchronized void register(String name, Function<Map<String, String>, Criterion> factory) {
        FACTORIES.put(name, factory);
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
        return f.apply(options);
    }
}
