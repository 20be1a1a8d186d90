package dev.lopper.training.loop;

import dev.lopper.training.lora.LoraAdapters;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.LlamaModel;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Trains LoRA adapters on a frozen model with the causal-LM loss: per optimizer step, {@code accumulation}
 * micro-batches of {@code microBatch} windows (each backward on loss / accumulation, so the gradient is the batch
 * mean), clip by global norm, {@link AdamW} at the {@link LrSchedule}'s rate. Only A and B are leaves of the
 * autograd graph; base weights never require gradients. Validation loss every {@code evalEvery} steps, optional
 * early stop, checkpoints ({@link Checkpoints}) every {@code checkpointEvery} steps, at the end and when
 * {@link #requestStop} is called (Ctrl-C). A run whose checkpoint directory holds a checkpoint continues from it
 * and ends with the same adapter, bit for bit on CPU, as a run never interrupted.
 *
 * <pre>{@code
 * Trainer t = new Trainer(model, lora, data, TrainOptions.defaults(100), out.resolve("checkpoints"), Trainer.Listener.NONE);
 * Trainer.Result r = t.run();
 * }</pre>
 */
public final class Trainer {
    /**
     * One step's record; {@code valLoss} null when the step was not validated. Step 0 is the model before training
     * (validation loss only, {@code trainLoss} null).
     */
    public record Point(int step, Double trainLoss, Double valLoss, double lr) {
    }

    /**
     * @param stoppedEarly validation loss stopped improving ({@code patience})
     * @param interrupted {@link #requestStop} ended the run (a checkpoint was written)
     * @param resumedFrom the step the run continued from (0: a fresh start)
     */
    public record Result(int step, boolean stoppedEarly, boolean interrupted, int resumedFrom, List<Point> history,
                         double tokensPerSecond, double seconds) {
    }

    /** Progress callbacks (the CLI's progress line). */
    public interface Listener {
        Listener NONE = new Listener() { };

        default void step(int step, int total, double loss, double lr, double tokensPerSecond, double etaSeconds) { }

        default void validated(int step, double loss) { }

        default void checkpointed(int step, Path dir) { }

        default void resumed(int step, Path dir) { }

        /**
         * After each optimizer step's gradients are accumulated and clipped, before the update: the adapters (A and B
         * as they were for this step) and their gradients, in {@link LoraAdapters#tensors()}'s order. Methods that
         * learn from training (LoRAPrune's importance) read them here; they must not keep the arrays.
         */
        default void gradients(int step, LoraAdapters lora, List<NDArray> grads) { }
    }

    private final LossPass pass;
    private final LoraAdapters lora;
    private final TrainingData data;
    private final TrainOptions o;
    private final Path checkpoints;
    private final Listener listener;
    private volatile boolean stopRequested;

    /** @param checkpoints where checkpoints are written and resumed from (null: none) */
    public Trainer(LlamaModel model, LoraAdapters lora, TrainingData data, TrainOptions options, Path checkpoints, Listener listener) {
        this(LossPass.inMemory(model), lora, data, options, checkpoints, listener);
    }

    /** A trainer computing each micro-batch with {@code pass} (in memory or layer-streamed). */
    public Trainer(LossPass pass, LoraAdapters lora, TrainingData data, TrainOptions options, Path checkpoints, Listener listener) {
        if (data.train().length < options.windows()) {
            throw new IllegalArgumentException("the run reads " + options.windows() + " training windows, but the data holds " + data.train().length);
        }
        this.pass = pass;
        this.lora = lora;
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
        Map<String, NDArray> tensors = lora.tensors();
        List<String> names = new ArrayList<>(tensors.keySet());
        List<NDArray> params = new ArrayList<>(tensors.values());
        AdamW opt = new AdamW(params, lora.manager(), 0.9, 0.999, 1e-8, o.weightDecay());
        LrSchedule schedule = new LrSchedule(o.learningRate(), o.warmup(), o.steps());
        List<Point> history = new ArrayList<>();
        int step = 0;
        double best = Double.MAX_VALUE;
        int sinceBest = 0;
        Path resume = checkpoints == null ? null : Checkpoints.latest(checkpoints);
        if (resume != null) {
            Checkpoints.State s = restore(resume, names, params, opt);
            step = s.step();
            history.addAll(s.history());
            best = s.best();
            sinceBest = s.sinceBest();
            listener.resumed(step, resume);
        }
        if (step == 0) {
            double val = validate(); // the starting point of the curve: B = 0, so this is the base model's loss
            listener.validated(0, val);
            history.add(new Point(0, null, val, 0));
            best = val;
        }
        int resumedFrom = step;
        boolean early = o.patience() > 0 && sinceBest >= o.patience();
        boolean saved = true;
        long start = System.nanoTime();
        long tokensPerStep = (long) o.accumulation() * o.microBatch() * o.seqLen();
        while (step < o.steps() && !early) {
            if (stopRequested) {
                break;
            }
            double lr = schedule.at(step);
            double loss = trainStep(step, lr, params, opt);
            step++;
            Double val = null;
            if (step % o.evalEvery() == 0 || step == o.steps()) {
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
            history.add(new Point(step, loss, val, lr));
            double secs = (System.nanoTime() - start) / 1e9;
            double rate = (step - resumedFrom) * tokensPerStep / secs;
            listener.step(step, o.steps(), loss, lr, rate, (o.steps() - step) * secs / (step - resumedFrom));
            saved = false;
            if ((o.checkpointEvery() > 0 && step % o.checkpointEvery() == 0) || step == o.steps() || early) {
                checkpoint(step, opt, names, params, history, best, sinceBest);
                saved = true;
            }
        }
        if (!saved) {
            checkpoint(step, opt, names, params, history, best, sinceBest);
        }
        double secs = (System.nanoTime() - start) / 1e9;
        double rate = secs > 0 ? (step - resumedFrom) * tokensPerStep / secs : 0;
        return new Result(step, early, stopRequested && step < o.steps() && !early, resumedFrom, List.copyOf(history), rate, secs);
    }

    /** One optimizer step; returns the mean training loss of its windows. */
    private double trainStep(int step, double lr, List<NDArray> params, AdamW opt) {
        try (NDManager scope = lora.manager().newSubManager()) {
            List<NDArray> grads = new ArrayList<>();
            for (NDArray p : params) {
                grads.add(scope.zeros(p.getShape()));
            }
            double loss = 0;
            for (int micro = 0; micro < o.accumulation(); micro++) {
                // torch's generator (dropout) re-seeded per micro-batch and layer: no RNG state to carry across a resume
                int first = (step * o.accumulation() + micro) * o.microBatch();
                try (NDManager micro1 = scope.newSubManager()) {
                    NDArray ids = ids(micro1, first, o.microBatch(), data.train());
                    loss += pass.train(micro1, ids, lora, 1.0 / o.accumulation(), grads, seedFor(o.seed(), step, micro));
                }
            }
            clip(grads);
            listener.gradients(step, lora, grads);
            opt.step(grads, lr);
            return loss;
        }
    }

    /** PyTorch's clip_grad_norm_ ({@link Batches#clip}). */
    private void clip(List<NDArray> grads) {
        Batches.clip(grads, o.maxGradNorm());
    }

    /** Mean causal-LM loss over the validation windows (no dropout, no gradients). */
    public double validate() {
        long[][] v = data.validation();
        double sum = 0;
        for (int first = 0; first < v.length; first += o.microBatch()) {
            int n = Math.min(o.microBatch(), v.length - first);
            try (NDManager scope = lora.manager().newSubManager()) {
                sum += pass.evaluate(scope, ids(scope, first, n, v), lora) * n;
            }
        }
        return sum / v.length;
    }

    private NDArray ids(NDManager m, int first, int n, long[][] windows) {
        return Batches.ids(m, first, n, windows);
    }

    static int seedFor(long seed, int step, int micro) {
        return new SplittableRandom(seed ^ (0x9E3779B97F4A7C15L * (step * 4096L + micro + 1))).nextInt() & Integer.MAX_VALUE;
    }

    private Checkpoints.State restore(Path dir, List<String> names, List<NDArray> params, AdamW opt) {
        Checkpoints.State s = Checkpoints.state(dir);
        if (!s.options().toString().equals(Checkpoints.comparable(o).toString())
                || !s.lora().toString().equals(Checkpoints.tree(lora.config()).toString())) {
            throw new IllegalArgumentException(dir + ": this checkpoint was written with other options (" + s.options() + ", " + s.lora()
                    + "); run with the same options to resume, or --overwrite to start over");
        }
        Map<String, F32Tensors.Loaded> a = F32Tensors.read(dir.resolve("adapter.safetensors"));
        for (int i = 0; i < names.size(); i++) {
            F32Tensors.Loaded t = a.get(names.get(i));
            if (t == null || !new Shape(t.shape()).equals(params.get(i).getShape())) {
                throw new IllegalArgumentException(dir.resolve("adapter.safetensors") + ": tensor '" + names.get(i)
                        + "' is missing or has another shape than this model's adapter");
            }
            F32Tensors.copyInto(params.get(i), t.data());
        }
        Map<String, float[]> moments = new java.util.HashMap<>();
        F32Tensors.read(dir.resolve("optimizer.safetensors")).forEach((k, v) -> moments.put(k, v.data()));
        opt.restore(names, moments, s.optimizerSteps());
        return s;
    }

    private void checkpoint(int step, AdamW opt, List<String> names, List<NDArray> params, List<Point> history, double best,
                            int sinceBest) throws IOException {
        if (checkpoints == null) {
            return;
        }
        Map<String, NDArray> adapter = new java.util.LinkedHashMap<>();
        for (int i = 0; i < names.size(); i++) {
            adapter.put(names.get(i), params.get(i));
        }
        Checkpoints.State s = new Checkpoints.State(step, opt.steps(), (long) step * o.accumulation() * o.microBatch(),
                o.seed(), "torch manual_seed(f(seed, step, micro-batch)) before each micro-batch; data windows f(seed)",
                Checkpoints.comparable(o), Checkpoints.tree(lora.config()), history, best, sinceBest);
        Path dir = Checkpoints.save(checkpoints, s, adapter, opt.state(names));
        listener.checkpointed(step, dir);
    }
}
