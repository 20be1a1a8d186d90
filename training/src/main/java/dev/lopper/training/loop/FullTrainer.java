package dev.lopper.training.loop;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.surgery.Surgery;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Trains every weight of a {@link FullModel} with the causal-LM loss, with the same loop as the LoRA {@link Trainer}:
 * per optimizer step {@code accumulation} micro-batches (each backward on loss / accumulation), clipping by global
 * norm, {@link AdamW} at the {@link LrSchedule}'s rate, validation every {@code evalEvery} steps, checkpoints every
 * {@code checkpointEvery} steps, at the end and on {@link #requestStop}. A {@link PruneDuringTraining} method
 * sees each step's gradients and may cut structures after a step: the weights and AdamW's moments are then cut
 * by {@link Surgery} with the same selections, and training continues on the smaller model.
 *
 * <p>Memory: {@link FullModel#trainingBytes} (weights, gradients, two moments; fp32) plus activations. A run
 * whose checkpoint directory holds a checkpoint continues from it (model shape, moments, the method's state) and
 * ends with the same weights, bit for bit on CPU, as an uninterrupted run: the model has no dropout, the windows
 * are a function of the seed, and the same operations run in the same order.
 *
 * <pre>{@code
 * FullTrainer t = new FullTrainer(model, data, TrainOptions.defaults(100), out.resolve("checkpoints"),
 *         FullTrainer.Listener.NONE, PruneDuringTraining.NONE);
 * FullTrainer.Result r = t.run();
 * try (FullModel trained = t.model()) { ... }      // the trainer hands the (possibly smaller) model back
 * }</pre>
 */
public final class FullTrainer {
    private static final ObjectMapper JSON = new ObjectMapper();
    static final String WEIGHTS = "model.safetensors";
    static final String MOMENTS = "optimizer.safetensors";
    static final String FULL = "full.json";

    /** One step's record: as {@link Trainer.Point}, with the model's parameter count after the step. */
    public record Point(int step, Double trainLoss, Double valLoss, double lr, long params) {
        Trainer.Point plain() {
            return new Trainer.Point(step, trainLoss, valLoss, lr);
        }
    }

    /** @param resumedFrom the step the run continued from (0: a fresh start) */
    public record Result(int step, boolean interrupted, int resumedFrom, List<Point> history, double tokensPerSecond,
                         double seconds) {
        /** The history as the LoRA trainer's points (for {@link LossCurve}). */
        public List<Trainer.Point> plainHistory() {
            return history.stream().map(Point::plain).toList();
        }
    }

    /** Progress callbacks: the LoRA trainer's, plus each cut. */
    public interface Listener extends Trainer.Listener {
        Listener NONE = new Listener() { };

        default void pruned(int step, long paramsBefore, long paramsAfter) { }
    }

    private FullModel model;
    private AdamW opt;
    private final TrainingData data;
    private final TrainOptions o;
    private final Path checkpoints;
    private final Listener listener;
    private final PruneDuringTraining method;
    private volatile boolean stopRequested;

    /**
     * The trainer takes {@code model} over: after {@link #run} {@link #model()} is the trained (possibly cut)
     * model, which the caller closes.
     */
    public FullTrainer(FullModel model, TrainingData data, TrainOptions options, Path checkpoints, Listener listener,
                       PruneDuringTraining method) {
        int need = options.windows() * method.batchesPerStep();
        if (data.train().length < need) {
            throw new IllegalArgumentException("the run reads " + need + " training windows, but the data holds " + data.train().length);
        }
        if (options.patience() > 0) {
            throw new IllegalArgumentException("--patience " + options.patience() + ": early stopping is not available for full training");
        }
        this.model = model;
        this.data = data;
        this.o = options;
        this.checkpoints = checkpoints;
        this.listener = listener;
        this.method = method;
    }

    /** The current model (after {@link #run}: the trained one). */
    public FullModel model() {
        return model;
    }

    /** Asks the run to write a checkpoint and return after the current step (safe from another thread). */
    public void requestStop() {
        stopRequested = true;
    }

    public Result run() throws IOException {
        opt = newOptimizer(model);
        LrSchedule schedule = new LrSchedule(o.learningRate(), o.warmup(), o.steps());
        List<Point> history = new ArrayList<>();
        int step = 0;
        Path resume = checkpoints == null ? null : Checkpoints.latest(checkpoints);
        if (resume != null) {
            step = restore(resume, history);
            listener.resumed(step, resume);
        }
        if (step == 0) {
            double val = validate();
            listener.validated(0, val);
            history.add(new Point(0, null, val, 0, model.parameterCount()));
        }
        int resumedFrom = step;
        boolean saved = true;
        long start = System.nanoTime();
        long tokensPerStep = (long) o.accumulation() * o.microBatch() * o.seqLen() * method.batchesPerStep();
        while (step < o.steps() && !stopRequested) {
            double lr = schedule.at(step);
            double loss = trainStep(step, lr);
            List<LayerSelection> cut = method.afterStep(step, model, stepData());
            step++;
            if (cut != null) {
                long before = model.parameterCount();
                applyCut(cut);
                listener.pruned(step, before, model.parameterCount());
            }
            Double val = null;
            if (step % o.evalEvery() == 0 || step == o.steps()) {
                val = validate();
                listener.validated(step, val);
            }
            history.add(new Point(step, loss, val, lr, model.parameterCount()));
            double secs = (System.nanoTime() - start) / 1e9;
            listener.step(step, o.steps(), loss, lr, (step - resumedFrom) * tokensPerStep / secs,
                    (o.steps() - step) * secs / (step - resumedFrom));
            saved = false;
            if ((o.checkpointEvery() > 0 && step % o.checkpointEvery() == 0) || step == o.steps()) {
                checkpoint(step, history);
                saved = true;
            }
        }
        if (!saved) {
            checkpoint(step, history);
        }
        double secs = (System.nanoTime() - start) / 1e9;
        double rate = secs > 0 ? (step - resumedFrom) * tokensPerStep / secs : 0;
        return new Result(step, stopRequested && step < o.steps(), resumedFrom, List.copyOf(history), rate, secs);
    }

    private AdamW newOptimizer(FullModel m) {
        return new AdamW(new ArrayList<>(m.weights().values()), m.manager(), 0.9, 0.999, 1e-8, o.weightDecay());
    }

    /** One optimizer step over every weight; returns the mean training loss of its windows. */
    private double trainStep(int step, double lr) {
        List<String> names = model.names();
        try (NDManager scope = model.manager().newSubManager()) {
            Map<String, NDArray> grads = new LinkedHashMap<>();
            for (String n : names) {
                grads.put(n, scope.zeros(model.weights().get(n).getShape()));
            }
            double loss = 0;
            for (int micro = 0; micro < o.accumulation(); micro++) {
                int first = (step * o.accumulation() + micro) * o.microBatch();
                try (NDManager sub = scope.newSubManager()) {
                    NDArray ids = Batches.ids(sub, first, o.microBatch(), data.train());
                    Map<String, NDArray> leaves = model.leaves(sub);
                    try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                        NDArray l = model.loss(sub, ids, leaves, method.transform()).mul((float) (1.0 / o.accumulation()));
                        loss += l.getFloat();
                        gc.backward(l);
                    }
                    for (String n : names) {
                        NDArray g = leaves.get(n).getGradient();
                        grads.get(n).addi(g);
                    }
                }
            }
            method.observe(step, model, grads);
            List<NDArray> list = new ArrayList<>(grads.values());
            Batches.clip(list, o.maxGradNorm());
            opt.step(list, lr);
            return loss;
        }
    }

    private PruneDuringTraining.StepData stepData() {
        return new PruneDuringTraining.StepData() {
            @Override
            public NDArray extraBatch(NDManager scope, int step, int micro) {
                return Batches.ids(scope, o.windows() + (step * o.accumulation() + micro) * o.microBatch(), o.microBatch(), data.train());
            }

            @Override
            public int accumulation() {
                return o.accumulation();
            }
        };
    }

    /** Cuts the weights and AdamW's moments with the same selections (current indices) and swaps the model. */
    private void applyCut(List<LayerSelection> cut) {
        ModelConfig config = model.config();
        List<String> names = model.names();
        Map<String, NDArray> state = opt.state(names);
        Map<String, NDArray> m = new LinkedHashMap<>();
        Map<String, NDArray> v = new LinkedHashMap<>();
        for (String n : names) {
            m.put(n, state.get(n + ".exp_avg"));
            v.put(n, state.get(n + ".exp_avg_sq"));
        }
        FullModel next = model.cut(cut);
        Map<String, float[]> moments = new LinkedHashMap<>();
        var mCut = Surgery.apply(config, FullModel.source(m), cut).tensors();
        var vCut = Surgery.apply(config, FullModel.source(v), cut).tensors();
        try (NDManager scope = next.manager().newSubManager()) {
            for (String n : next.names()) {
                moments.put(n + ".exp_avg", mCut.load(n, scope).toFloatArray());
                moments.put(n + ".exp_avg_sq", vCut.load(n, scope).toFloatArray());
            }
        }
        long steps = opt.steps();
        model.close();
        model = next;
        opt = newOptimizer(next);
        opt.restore(next.names(), moments, steps);
        method.cut(cut);
    }

    /** Mean causal-LM loss over the validation windows (the method's transform applied, no gradients). */
    public double validate() {
        long[][] v = data.validation();
        double sum = 0;
        for (int first = 0; first < v.length; first += o.microBatch()) {
            int n = Math.min(o.microBatch(), v.length - first);
            try (NDManager scope = model.manager().newSubManager()) {
                sum += model.loss(scope, Batches.ids(scope, first, n, v), model.weights(), method.transform()).getFloat() * n;
            }
        }
        return sum / v.length;
    }

    private ObjectNode runInfo() {
        ObjectNode n = JSON.createObjectNode();
        n.put("training", "full");
        n.put("method", method.name());
        if (method.options() != null) {
            n.set("options", method.options());
        }
        return n;
    }

    private void checkpoint(int step, List<Point> history) throws IOException {
        if (checkpoints == null) {
            return;
        }
        ObjectNode full = JSON.createObjectNode();
        full.set("config", model.config().toJson());
        ArrayNode order = full.putArray("names"); // the tensors' order: the gradient norm sums in it (bit-exact resume)
        model.names().forEach(order::add);
        ArrayNode h = full.putArray("history");
        history.forEach(p -> h.add(JSON.valueToTree(p)));
        if (method.state() != null) {
            full.set("method", method.state());
        }
        Checkpoints.State s = new Checkpoints.State(step, opt.steps(), (long) step * o.accumulation() * o.microBatch()
                * method.batchesPerStep(), o.seed(), "none: no dropout; data windows f(seed)", Checkpoints.comparable(o),
                runInfo(), history.stream().map(Point::plain).toList(), 0, 0);
        Map<String, Map<String, NDArray>> files = new LinkedHashMap<>();
        files.put(WEIGHTS, model.weights());
        files.put(MOMENTS, opt.state(model.names()));
        Path dir = Checkpoints.saveFiles(checkpoints, s, files, Map.of(FULL, full));
        listener.checkpointed(step, dir);
    }

    private int restore(Path dir, List<Point> history) throws IOException {
        Checkpoints.State s = Checkpoints.state(dir);
        if (!s.options().toString().equals(Checkpoints.comparable(o).toString()) || !s.lora().toString().equals(runInfo().toString())) {
            throw new IllegalArgumentException(dir + ": this checkpoint was written with other options (" + s.options() + ", " + s.lora()
                    + "); run with the same options to resume, or --overwrite to start over");
        }
        JsonNode full = JSON.readTree(dir.resolve(FULL).toFile());
        ModelConfig config = ModelConfig.parse((ObjectNode) full.get("config"), dir.resolve(FULL));
        Map<String, F32Tensors.Loaded> read = F32Tensors.read(dir.resolve(WEIGHTS));
        Map<String, F32Tensors.Loaded> ordered = new LinkedHashMap<>();
        full.get("names").forEach(n -> ordered.put(n.asText(), read.get(n.asText())));
        FullModel restored = FullModel.of(config, ordered, model.manager().getDevice());
        model.close();
        model = restored;
        opt = newOptimizer(model);
        Map<String, float[]> moments = new LinkedHashMap<>();
        F32Tensors.read(dir.resolve(MOMENTS)).forEach((k, v) -> moments.put(k, v.data()));
        opt.restore(model.names(), moments, s.optimizerSteps());
        for (JsonNode p : full.get("history")) {
            history.add(JSON.treeToValue(p, Point.class));
        }
        if (full.has("method")) {
            method.restore(full.get("method"));
        }
        return s.step();
    }
}
