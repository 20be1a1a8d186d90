package dev.lopper.training.job;

import dev.lopper.training.method.AdaptPrunerMethod;
import dev.lopper.training.method.IterativeCriterion;
import dev.lopper.training.method.LoraPrune;
import dev.lopper.training.method.ScheduleMethod;


import dev.lopper.pruning.criteria.Criteria;

import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Function;

/**
 * The registry of training-aware pruning methods ({@code --method NAME} that {@code lopper prune} hands to the
 * schedule engine). A name not registered here but known to {@link Criteria} runs as an iterative one-shot
 * criterion ({@link IterativeCriterion}).
 *
 * <pre>{@code
 * ScheduleMethods.register("my-method", MyMethod::new);   // MyMethod(ScheduleRequest)
 * ScheduleMethods.isMethod("lora-prune");                  // true
 * }</pre>
 */
public final class ScheduleMethods {
    private static final Map<String, Function<ScheduleRequest, ScheduleMethod>> METHODS = new TreeMap<>();

    static {
        register(LoraPrune.NAME, LoraPrune::new);
        register(AdaptPrunerMethod.NAME, AdaptPrunerMethod::new);
    }

    private ScheduleMethods() {
    }

    public static synchronized void register(String name, Function<ScheduleRequest, ScheduleMethod> factory) {
        METHODS.put(name, factory);
    }

    /** Whether {@code name} is a training-aware method (not a one-shot criterion). */
    public static synchronized boolean isMethod(String name) {
        return METHODS.containsKey(name) || FullTrainingSchedule.handles(name) || CompressoSchedule.handles(name);
    }

    /** Every training-aware method: the LoRA ones registered here, the full-training ones (efficientllm, bip) and compresso. */
    public static synchronized Set<String> names() {
        Set<String> all = new java.util.TreeSet<>(METHODS.keySet());
        all.addAll(dev.lopper.training.job.PruneWhileTraining.METHODS);
        all.add(CompressoSchedule.NAME);
        return Set.copyOf(all);
    }

    /**
     * The training options a method runs with where the user gives none, over {@code steps} steps: Compresso's
     * official ones for compresso, LoRAPrune's {@code prune.py} otherwise (batch 128 = micro-batch 4 x 32).
     */
    public static dev.lopper.training.loop.TrainOptions trainDefaults(String method, int steps, long seed) {
        if (CompressoSchedule.handles(method)) {
            return CompressoSchedule.trainDefaults(steps, seed);
        }
        return dev.lopper.training.loop.TrainOptions.defaults(steps).withAccumulation(32).withSeed(seed);
    }

    /** The LoRA settings a method runs with where the user gives none. */
    public static dev.lopper.training.lora.LoraConfig loraDefaults(String method) {
        return CompressoSchedule.handles(method) ? CompressoSchedule.loraDefaults() : dev.lopper.training.lora.LoraConfig.defaults();
    }

    /** The method of {@code r}: a registered method, or the iterative form of a criterion. */
    public static ScheduleMethod create(ScheduleRequest r) {
        Function<ScheduleRequest, ScheduleMethod> f;
        synchronized (ScheduleMethods.class) {
            f = METHODS.get(r.prune().criterion());
        }
        if (f != null) {
            return f.apply(r);
        }
        if (!Criteria.names().contains(r.prune().criterion())) {
            throw new IllegalArgumentException("--method " + r.prune().criterion() + ": unknown; expected a criterion "
                    + new java.util.TreeSet<>(Criteria.names()) + " or a training-aware method " + names());
        }
        return new IterativeCriterion(r);
    }
}
