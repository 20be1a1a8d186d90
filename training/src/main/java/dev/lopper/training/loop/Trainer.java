package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.lopper.pruning.graph.LayerSelection;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The one training loop: LoRA adapters, every weight of a model, or masks and scores, any mix, as a
 * {@link Trainee}'s {@link ParamGroup}s. Per optimizer step: {@code accumulation} micro-batches of
 * {@code microBatch} windows (each backward on loss / accumulation, so the gradient is the batch mean), the
 * method's {@link TrainingMethod#afterBackward} hook, clipping of the clipped groups by their global norm
 * (PyTorch's {@code clip_grad_norm_}), {@link TrainingMethod#beforeUpdate}, one {@link AdamW} update per group at
 * its own rate, {@link TrainingMethod#afterUpdate} (a prune point cuts the trainee and its optimizer state in
 * memory). Validation loss every {@code evalEvery} steps (when the data has validation windows), optional early
 * stop, checkpoints ({@link Checkpoints}) every {@code checkpointEvery} steps, at the end and when
 * {@link #requestStop} is called (Ctrl-C). A run whose checkpoint directory holds a checkpoint continues from it
 * and ends, bit for bit on CPU, as a run never interrupted: windows, dropout and noise are functions of
 * (seed, step, micro-batch), and the same operations run in the same order.
 *
 * <pre>{@code
 * Trainer<LoraTrainee> t = new Trainer<>(trainee, TrainingMethod.none(), data, TrainOptions.defaults(100),
 *         out.resolve("checkpoints"), Trainer.Listener.NONE);
 * Trainer.Result r = t.run();
 * }</pre>
 *
 * @param <T> the trainee's type (what the method's hooks read)
 */
public final class Trainer<T extends Trainee> {
    /**
     * One step's record; {@code valLoss} null when the step was not validated. Step 0 is the model before training
     * (validation loss only, {@code trainLoss} null). {@code lr} is the first group's rate, {@code params} the
     * model's size after the step, {@code metrics} the method's extra columns.
     */
    public record Point(int step, Double trainLoss, Double valLoss, double lr, long params, Map<String, Double> metrics) {
        public Point {
            metrics = metrics == null ? Map.of() : java.util.Collections.unmodifiableMap(new java.util.TreeMap<>(metrics)); // sorted: stable columns
        }
    }

    /**
     * @param stoppedEarly validation loss stopped improving ({@code patience})
     * @param interrupted {@link #requestStop} ended the run (a checkpoint was written)
     * @param resumedFrom the step the run continued from (0: a fresh start)
     */
    public record Result(int step, boolean stoppedEarly, boolean interrupted, int resumedFrom, List<Point> history,
                         double tokensPerSecond, double seconds) {
    }

    /** Progress callbacks (the CLI's progress line, the curves). */
    public interface Listener {
        Listener NONE = new Listener() { };

        default void step(Point p, int total, double tokensPerSecond, double etaSeconds) { }

        default void validated(int step, double loss) { }

        default void resumed(int step, Path dir) { }

        default void pruned(int step, long paramsBefore, long paramsAfter) { }

        /** A line of progress from the job around the loop (a teacher cache being built, the memory full training holds). */
        default void message(String line) { }

        /**
         * Inside a long optimizer step (every {@link #PROGRESS_SECONDS} s at most, between micro-batches): step
         * {@code step} (1-based) has done {@code micro} of its {@code accumulation} micro-batches.
         */
        default void within(int step, int micro, int accumulation, double tokensPerSecond, double etaSeconds) { }
    }

    /** No more than this many seconds pass without a progress call ({@link Listener#within}) while a run trains. */
    public static final double PROGRESS_SECONDS = 5;

    /** {@link #PROGRESS_SECONDS}, or the system property {@code lopper.progress.seconds} (tests set 0: a line per micro-batch). */
    private static double progressSeconds() {
        String s = System.getProperty("lopper.progress.seconds");
        return s == null ? PROGRESS_SECONDS : Double.parseDouble(s);
    }

    private final T trainee;
    private final TrainingMethod<? super T> method;
    private final TrainingData data;
    private final TrainOptions o;
    private final Path checkpoints;
    private final Listener listener;
    private List<ParamGroup> groups;
    private List<AdamW> optimizers;
    private volatile boolean stopRequested;
    private long start;
    private long lastProgress;
    private int resumedFrom;
    private long tokensPerStep;

    /** @param checkpoints where checkpoints are written and resumed from (null: none) */
    public Trainer(T trainee, TrainingMethod<? super T> method, TrainingData data, TrainOptions options, Path checkpoints,
                   Listener listener) {
        int need = options.windows() * method.batchesPerStep();
        if (data.train().length < need) {
            throw new IllegalArgumentException("the run reads " + need + " training windows, but the data holds " + data.train().length);
        }
        this.trainee = trainee;
        this.method = method;
        this.data = data;
        this.o = options;
        this.checkpoints = checkpoints;
        this.listener = listener;
    }

    /** Asks the run to write a checkpoint and return after the current step (safe from another thread). */
    public void requestStop() {
        stopRequested = true;
    }

    public Result run() throws IOException {
        List<Point> history = new ArrayList<>();
        int step = 0;
        double best = Double.MAX_VALUE;
        int sinceBest = 0;
        Path resume = checkpoints == null ? null : Checkpoints.latest(checkpoints);
        if (resume == null) {
            newOptimizers(null);
        } else { // the optimizers are made once, for the restored groups (their moments live as long as the trainee)
            Checkpoints.State s = Checkpoints.restore(resume, comparable(), trainee, method, this::newOptimizers);
            step = s.step();
            history.addAll(s.history());
            best = s.best();
            sinceBest = s.sinceBest();
            listener.resumed(step, resume);
        }
        boolean validates = data.validation().length > 0;
        if (step == 0 && validates) {
            double val = validate(); // the starting point of the curve
            listener.validated(0, val);
            history.add(new Point(0, null, val, 0, trainee.modelParameters(), null));
            best = val;
        }
        resumedFrom = step;
        boolean early = o.patience() > 0 && sinceBest >= o.patience();
        boolean saved = true;
        start = System.nanoTime();
        lastProgress = start;
        tokensPerStep = (long) o.accumulation() * o.microBatch() * trainee.tokensPerWindow(o.seqLen()) * method.batchesPerStep();
        while (step < o.steps() && !early && !stopRequested) {
            double lr = groups.get(0).rate().at(step);
            double loss = trainStep(step);
            List<LayerSelection> cut = method.afterUpdate(step, trainee, stepData());
            step++;
            if (cut != null) {
                long before = trainee.modelParameters();
                applyCut(cut);
                listener.pruned(step, before, trainee.modelParameters());
            }
            Double val = null;
            if (validates && (step % o.evalEvery() == 0 || step == o.steps())) {
                val = validate();
                listener.validated(step, val);
                if (val < best) {
                    best = val;
                    sinceBest = 0;
                } else {
                    sinceBest++;
                    early = o.patience() > 0 && sinceBest >= o.patience();
                }
            }
            Point p = new Point(step, loss, val, lr, trainee.modelParameters(), method.metrics(trainee));
            history.add(p);
            double secs = (System.nanoTime() - start) / 1e9;
            listener.step(p, o.steps(), (step - resumedFrom) * tokensPerStep / secs, (o.steps() - step) * secs / (step - resumedFrom));
            lastProgress = System.nanoTime();
            saved = (o.checkpointEvery() > 0 && step % o.checkpointEvery() == 0) || step == o.steps() || early;
            if (saved) {
                checkpoint(step, history, best, sinceBest);
            }
        }
        if (!saved) {
            checkpoint(step, history, best, sinceBest);
        }
        double secs = (System.nanoTime() - start) / 1e9;
        double rate = secs > 0 ? (step - resumedFrom) * tokensPerStep / secs : 0;
        return new Result(step, early, stopRequested && step < o.steps() && !early, resumedFrom, List.copyOf(history), rate, secs);
    }

    /** One optimizer step; returns the step's training loss (the sum of the micro-batches' shares). */
    private double trainStep(int step) {
        try (NDManager scope = trainee.manager().newSubManager()) {
            Gradients grads = new Gradients(groups, scope);
            double loss = 0;
            for (int micro = 0; micro < o.accumulation(); micro++) {
                int first = (step * o.accumulation() + micro) * o.microBatch();
                try (NDManager m = scope.newSubManager()) {
                    NDArray ids = Batches.ids(m, first, o.microBatch(), data.train());
                    loss += trainee.train(new MicroBatch(m, ids, first, step, micro, 1.0 / o.accumulation(), seedFor(o.seed(), step, micro)), grads);
                }
                progressWithin(step, micro);
            }
            method.afterBackward(step, trainee, grads);
            Batches.clip(groups.stream().filter(ParamGroup::clipped).flatMap(g -> grads.list(g.name()).stream()).toList(), o.maxGradNorm());
            method.beforeUpdate(step, trainee, grads);
            for (int i = 0; i < groups.size(); i++) {
                double rate = groups.get(i).rate().at(step);
                if (!Double.isNaN(rate)) {
                    optimizers.get(i).step(grads.list(groups.get(i).name()), rate);
                }
            }
            return loss;
        }
    }

    /** A progress line inside a step when {@link #PROGRESS_SECONDS} passed since the last one. */
    private void progressWithin(int step, int micro) {
        long now = System.nanoTime();
        if (start == 0 || now - lastProgress < progressSeconds() * 1e9) {
            return;
        }
        lastProgress = now;
        double secs = Math.max(1e-9, (now - start) / 1e9);
        double done = (step - resumedFrom + (micro + 1.0) / o.accumulation()) * tokensPerStep;
        double rate = done / secs;
        double left = (o.steps() - step - (micro + 1.0) / o.accumulation()) * tokensPerStep;
        listener.within(step + 1, micro + 1, o.accumulation(), rate, rate > 0 ? left / rate : 0);
    }

    /** Mean loss over the validation windows (no dropout, no gradients). */
    private double validate() {
        long[][] v = data.validation();
        double sum = 0;
        for (int first = 0; first < v.length; first += o.microBatch()) {
            int n = Math.min(o.microBatch(), v.length - first);
            try (NDManager scope = trainee.manager().newSubManager()) {
                sum += trainee.evaluate(scope, Batches.ids(scope, first, n, v)) * n;
            }
        }
        return sum / v.length;
    }

    /** Torch's seed for micro-batch {@code micro} of {@code step}: no RNG state to carry across a resume. */
    public static int seedFor(long seed, int step, int micro) {
        return new SplittableRandom(seed ^ (0x9E3779B97F4A7C15L * (step * 4096L + micro + 1))).nextInt() & Integer.MAX_VALUE;
    }

    private TrainingMethod.StepData stepData() {
        return new TrainingMethod.StepData() {
            @Override
            public NDArray extraBatch(NDManager scope, int step, int micro) {
                return Batches.ids(scope, o.windows() + (step * o.accumulation() + micro) * o.microBatch(), o.microBatch(), data.train());
            }

            @Override
            public int accumulation() {
                return o.accumulation();
            }

            @Override
            public void progress(int step, int micro) {
                progressWithin(step, micro);
            }
        };
    }

    /** One AdamW per group (moments in the group's manager), restored from {@code saved} when given. */
    private void newOptimizers(Checkpoints.Moments saved) {
        groups = trainee.groups();
        optimizers = new ArrayList<>();
        for (ParamGroup g : groups) {
            AdamW opt = new AdamW(g.arrays(), g.manager(), g.weightDecay());
            if (saved != null) {
                opt.restore(g.names(), saved.moments(), saved.steps().getOrDefault(g.name(), 0L));
            }
            optimizers.add(opt);
        }
    }

    /** Cuts the trainee and every optimizer's moments with the same selections and rebuilds the optimizers. */
    private void applyCut(List<LayerSelection> cut) {
        Map<String, NDArray> moments = new LinkedHashMap<>();
        Map<String, Long> steps = optimizerState(moments);
        newOptimizers(new Checkpoints.Moments(trainee.cut(cut, moments), steps));
        method.cut(cut);
    }

    /** Every optimizer's moments ({@code NAME.exp_avg}, {@code NAME.exp_avg_sq}) into {@code moments}; returns its steps per group. */
    private Map<String, Long> optimizerState(Map<String, NDArray> moments) {
        Map<String, Long> steps = new LinkedHashMap<>();
        for (int i = 0; i < groups.size(); i++) {
            moments.putAll(optimizers.get(i).state(groups.get(i).names()));
            steps.put(groups.get(i).name(), optimizers.get(i).steps());
        }
        return steps;
    }

    /** The options as compared on resume (how often checkpoints are written may change between runs). */
    private JsonNode comparable() {
        return Checkpoints.comparable(o, trainee.describe(), method.name(), method.options());
    }

    private void checkpoint(int step, List<Point> history, double best, int sinceBest) throws IOException {
        if (checkpoints == null) {
            return;
        }
        Map<String, NDArray> params = new LinkedHashMap<>();
        groups.forEach(g -> params.putAll(g.tensors()));
        Map<String, NDArray> moments = new LinkedHashMap<>();
        Map<String, Long> steps = optimizerState(moments);
        Checkpoints.State s = new Checkpoints.State(step, steps, (long) step * o.accumulation() * o.microBatch() * method.batchesPerStep(),
                o.seed(), comparable(), trainee.shape(), method.state(), history, best, sinceBest);
        Checkpoints.save(checkpoints, s, params, moments);
    }
}
