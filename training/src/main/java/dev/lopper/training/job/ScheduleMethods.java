package dev.lopper.training.job;

import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.method.AdaptPrunerMethod;
import dev.lopper.training.method.Bip;
import dev.lopper.training.method.CompressoOptions;
import dev.lopper.training.method.EfficientLlm;
import dev.lopper.training.method.LoraPrune;

import java.io.IOException;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.function.Consumer;

/**
 * The registry of training-aware pruning methods ({@code lopper prune --method NAME} that trains): one line per
 * method names its job, the method options it takes and its training defaults. A name not registered here but known
 * to {@link Criteria} runs as an iterative one-shot criterion ({@link PruneSchedule}). Adding a method: its class
 * (a {@code ScheduleMethod} for the prune -> train schedule, a {@code FullTrainingMethod} for pruning while
 * training every weight, or a job of its own), one {@link #register} line here, and its test.
 *
 * <pre>{@code
 * ScheduleMethods.register(new ScheduleMethods.Entry("my-method", Set.of("my-option"), PruneSchedule.job(MyMethod::new),
 *         ScheduleMethods::loraDefaults, LoraConfig.defaults()));
 * ScheduleMethods.isMethod("lora-prune");                  // true
 * }</pre>
 */
public final class ScheduleMethods {
    /** How a registered method runs a scheduled request (the final model to its {@code --out}). */
    @FunctionalInterface
    public interface Job {
        PruneSchedule.Result run(ScheduleRequest r, Consumer<Trainer<?>> onStart) throws IOException;
    }

    /** Training settings over {@code steps} optimizer steps with seed {@code seed}, where the user gives none. */
    @FunctionalInterface
    public interface TrainDefaults {
        TrainOptions of(int steps, long seed);
    }

    /**
     * @param options the method options ({@code PruneRequest} criterion options) it takes
     * @param lora its adapters' defaults, or null when it trains no adapters
     */
    public record Entry(String name, Set<String> options, Job job, TrainDefaults trainDefaults, LoraConfig lora) {
    }

    private static final Map<String, Entry> METHODS = new TreeMap<>();

    static {
        register(new Entry(LoraPrune.NAME, Set.of("prune-freq"), PruneSchedule.job(LoraPrune::new), ScheduleMethods::loraPruneDefaults,
                LoraConfig.defaults()));
        register(new Entry(AdaptPrunerMethod.NAME, adaptPrunerOptions(), PruneSchedule.job(AdaptPrunerMethod::new),
                ScheduleMethods::loraPruneDefaults, LoraConfig.defaults()));
        register(new Entry(Compresso.NAME, Set.of("reg-lr", "prompt", "ending"), Compresso::run, Compresso::trainDefaults,
                CompressoOptions.officialLora()));
        register(new Entry(EfficientLlm.NAME, Set.of(), PruneWhileTraining.job(EfficientLlm::of), ScheduleMethods::fullTrainingDefaults, null));
        register(new Entry(Bip.NAME, Set.of(), PruneWhileTraining.job(Bip::of), ScheduleMethods::fullTrainingDefaults, null));
    }

    private ScheduleMethods() {
    }

    public static synchronized void register(Entry e) {
        METHODS.put(e.name(), e);
    }

    /** Whether {@code name} is a training-aware method (not a one-shot criterion). */
    public static synchronized boolean isMethod(String name) {
        return METHODS.containsKey(name);
    }

    /** The entry of {@code name}, or null for a one-shot criterion. */
    public static synchronized Entry get(String name) {
        return METHODS.get(name);
    }

    /** Every training-aware method. */
    public static synchronized Set<String> names() {
        return Set.copyOf(METHODS.keySet());
    }

    /** The training options a method runs with where the user gives none, over {@code steps} steps. */
    public static TrainOptions trainDefaults(String method, int steps, long seed) {
        Entry e = get(method);
        return e != null ? e.trainDefaults().of(steps, seed) : TrainOptions.defaults(steps).withSeed(seed);
    }

    /** The LoRA settings a method runs with where the user gives none. */
    public static LoraConfig loraDefaults(String method) {
        Entry e = get(method);
        return e != null && e.lora() != null ? e.lora() : LoraConfig.defaults();
    }

    /** LoRAPrune's {@code prune.py}: batch 128 = micro-batch 4 x 32, the recovery defaults otherwise. */
    static TrainOptions loraPruneDefaults(int steps, long seed) {
        TrainOptions d = TrainOptions.defaults(steps);
        return d.withBatch(d.microBatch(), 32, d.seqLen()).withSeed(seed);
    }

    /**
     * Full-parameter training (EfficientLLM, BiP): the recovery defaults with peak rate 1e-4, not LoRA's 3e-4. Neither
     * paper's code gives an LLM rate (BiP's is for vision models with SGD; EfficientLLM's code is not public); 1e-4 is
     * the usual AdamW rate for continued pre-training of a whole small LLM, and on the fixture 3e-4 ends worse than
     * no training at all (docs/CRITERIA.md, "EfficientLLM and BiP").
     */
    public static TrainOptions fullTrainingDefaults(int steps, long seed) {
        return TrainOptions.defaults(steps).withLearningRate(FULL_TRAINING_LR).withSeed(seed);
    }

    /** The peak rate of full-parameter training ({@link #fullTrainingDefaults}; also {@code recover --full}'s). */
    public static final double FULL_TRAINING_LR = 1e-4;

    /** adapt-pruner's own options and every option of the criteria it can run within layers ({@code criterion}). */
    private static Set<String> adaptPrunerOptions() {
        Set<String> s = new TreeSet<>(Set.of("step-ratio", "criterion"));
        Criteria.names().stream().map(Criteria::options).filter(java.util.Objects::nonNull).forEach(s::addAll);
        return Set.copyOf(s);
    }
}
