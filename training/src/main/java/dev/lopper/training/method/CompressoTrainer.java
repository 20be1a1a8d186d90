package dev.lopper.training.method;

import dev.lopper.training.job.Compresso;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.training.loop.AdamW;
import dev.lopper.training.loop.F32Tensors;
import dev.lopper.training.lora.LoraAdapters;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;

/**
 * Compresso's training loop ({@code CompressoTrainer.train}): per optimizer step, {@code accumulation}
 * micro-batches through {@link CompressoPass}; the LoRA gradients clipped to {@code maxGradNorm}; three AdamW
 * optimizers as the official {@code create_optimizer_and_scheduler}: LoRA at the linearly decaying LoRA rate,
 * log_alpha at {@code regLr}, the multipliers at {@code -regLr} (gradient ascent: they maximise the Lagrangian);
 * then log_alpha clamped ({@code constrain_parameters}). The first {@link CompressoOptions#prepruningSteps} steps
 * train LoRA alone. A checkpoint ({@code checkpoints/step-NNNNNN/}: adapter, masks, all optimizer moments, state)
 * is written every {@code checkpointEvery} steps and at the end; a run finding one continues from it and ends
 * with the same masks and adapter as a run never interrupted (all randomness is a function of (seed, step,
 * micro-batch)).
 *
 * <pre>{@code
 * CompressoTrainer t = new CompressoTrainer(model, lora, masks, windows, new long[0], options, out.resolve("checkpoints"), CompressoTrainer.Listener.NONE);
 * List<CompressoTrainer.Point> history = t.run();
 * }</pre>
 */
public final class CompressoTrainer {
    private static final ObjectMapper JSON = new ObjectMapper();
    static final String PREFIX = "step-";

    /** One step's record: mean LM loss, Lagrangian, expected and target sparsity (target 0 before pruning starts). */
    public record Point(int step, double loss, double lagrangian, double expectedSparsity, double target, double lambda1,
                        double lambda2, double lr) {
    }

    /** Progress callbacks. */
    public interface Listener {
        Listener NONE = new Listener() { };

        default void step(Point p, int total, double tokensPerSecond, double etaSeconds) { }

        default void resumed(int step, Path dir) { }
    }

    private record State(int step, long loraSteps, long maskSteps, JsonNode options, List<Point> history) {
    }

    private final LlamaModel model;
    private final LoraAdapters lora;
    private final L0Masks masks;
    private final long[][] windows;
    private final long[] prompt;
    private final CompressoOptions o;
    private final Path checkpoints;
    private final Listener listener;
    private volatile boolean stopRequested;

    /**
     * @param windows training windows [n][seqLen], read in order (window k of the run is windows[k])
     * @param prompt token ids of the collaborative prompt (empty: none)
     * @param checkpoints where checkpoints go and are resumed from (null: none)
     */
    public CompressoTrainer(LlamaModel model, LoraAdapters lora, L0Masks masks, long[][] windows, long[] prompt,
                            CompressoOptions options, Path checkpoints, Listener listener) {
        if (windows.length < options.windows()) {
            throw new IllegalArgumentException("the run reads " + options.windows() + " training windows, but the data holds " + windows.length);
        }
        this.model = model;
        this.lora = lora;
        this.masks = masks;
        this.windows = windows;
        this.prompt = prompt;
        this.o = options;
        this.checkpoints = checkpoints;
        this.listener = listener;
    }

    /** Asks the run to write a checkpoint and return after the current step (safe from another thread). */
    public void requestStop() {
        stopRequested = true;
    }

    /** Runs (or resumes) the training; returns the history of every step. */
    public List<Point> run() throws IOException {
        Map<String, NDArray> loraTensors = lora.tensors();
        Map<String, NDArray> alphas = masks.logAlphas();
        Map<String, NDArray> lambdas = masks.lambdas();
        AdamW loraOpt = new AdamW(new ArrayList<>(loraTensors.values()), lora.manager(), 0.9, 0.999, 1e-8, 0);
        AdamW alphaOpt = new AdamW(new ArrayList<>(alphas.values()), masks.manager(), 0.9, 0.999, 1e-8, 0);
        AdamW lambdaOpt = new AdamW(new ArrayList<>(lambdas.values()), masks.manager(), 0.9, 0.999, 1e-8, 0);
        List<Point> history = new ArrayList<>();
        int step = 0;
        Path resume = checkpoints == null ? null : latest(checkpoints);
        if (resume != null) {
            State s = restore(resume, loraTensors, alphas, lambdas, loraOpt, alphaOpt, lambdaOpt);
            step = s.step();
            history.addAll(s.history());
            listener.resumed(step, resume);
        }
        int resumedFrom = step;
        long start = System.nanoTime();
        boolean saved = true;
        while (step < o.steps() && !stopRequested) {
            history.add(trainStep(step, loraOpt, alphaOpt, lambdaOpt));
            step++;
            saved = false;
            double secs = (System.nanoTime() - start) / 1e9;
            long tokens = (long) (step - resumedFrom) * o.accumulation() * o.microBatch() * (o.seqLen() + prompt.length);
            listener.step(history.get(history.size() - 1), o.steps(), tokens / secs, (o.steps() - step) * secs / (step - resumedFrom));
            if ((o.checkpointEvery() > 0 && step % o.checkpointEvery() == 0) || step == o.steps()) {
                checkpoint(step, history, loraTensors, alphas, lambdas, loraOpt, alphaOpt, lambdaOpt);
                saved = true;
            }
        }
        if (!saved) {
            checkpoint(step, history, loraTensors, alphas, lambdas, loraOpt, alphaOpt, lambdaOpt);
        }
        return List.copyOf(history);
    }

    /** Whether the last run ended before its last step (a stop was requested). */
    public boolean interrupted(List<Point> history) {
        return history.size() < o.steps();
    }

    private Point trainStep(int step, AdamW loraOpt, AdamW alphaOpt, AdamW lambdaOpt) {
        boolean pruning = step >= o.prepruningSteps();
        double target = pruning ? o.targetAt(step - o.prepruningSteps()) : 0;
        double lr = o.loraLrAt(step);
        try (NDManager scope = lora.manager().newSubManager()) {
            List<NDArray> loraGrads = zeros(scope, lora.tensors().values());
            List<NDArray> alphaGrads = zeros(scope, masks.logAlphas().values());
            List<NDArray> lambdaGrads = zeros(scope, masks.lambdas().values());
            double loss = 0;
            double lag = 0;
            double sparsity = pruning ? Double.NaN : masks.expectedSparsity();
            for (int micro = 0; micro < o.accumulation(); micro++) {
                int seed = seedFor(o.seed(), step, micro);
                try (NDManager m = scope.newSubManager()) {
                    NDArray ids = ids(m, (step * o.accumulation() + micro) * o.microBatch());
                    List<float[]> noise = pruning ? CompressoPass.noise(masks, new SplittableRandom(seed)) : null;
                    CompressoPass.Result r = CompressoPass.run(m, model, lora, masks, ids, prompt.length, noise,
                            target, 1.0 / o.accumulation(), seed);
                    add(loraGrads, r.loraGrads());
                    add(alphaGrads, r.logAlphaGrads());
                    add(lambdaGrads, r.lambdaGrads());
                    loss += r.ce() / o.accumulation();
                    lag += r.lagrangian() / o.accumulation();
                    sparsity = pruning ? r.sparsity() : sparsity;
                }
            }
            checkFinite(step, loss, lag, pruning ? sparsity : 0, loraGrads, alphaGrads, lambdaGrads);
            clip(loraGrads);
            loraOpt.step(loraGrads, lr);
            if (pruning) {
                alphaOpt.step(alphaGrads, o.regLr());
                lambdaOpt.step(lambdaGrads, -o.regLr()); // AdamW with a negative rate: ascent, as the official lagrangian_optimizer
                masks.constrain();
            }
            return new Point(step + 1, loss, lag, sparsity, target, masks.lambda1().getFloat(0), masks.lambda2().getFloat(0), lr);
        }
    }

    /** Stops the run at the first non-finite loss or gradient, naming what went non-finite (never trains on NaN). */
    private static void checkFinite(int step, double loss, double lag, double sparsity, List<NDArray> lora, List<NDArray> alphas,
                                    List<NDArray> lambdas) {
        double l = norm(lora);
        double a = norm(alphas);
        double m = norm(lambdas);
        if (!Double.isFinite(loss + lag + sparsity + l + a + m)) {
            throw new IllegalStateException(String.format(java.util.Locale.ROOT,
                    "compresso step %d: non-finite training values (LM loss %s, Lagrangian %s, expected sparsity %s, gradient norms: LoRA %s, "
                            + "log_alpha %s, multipliers %s)", step + 1, loss, lag, sparsity, l, a, m));
        }
    }

    private static double norm(List<NDArray> grads) {
        double sq = 0;
        for (NDArray g : grads) {
            sq += g.square().sum().getFloat();
        }
        return Math.sqrt(sq);
    }

    private static List<NDArray> zeros(NDManager m, java.util.Collection<NDArray> like) {
        List<NDArray> out = new ArrayList<>();
        for (NDArray p : like) {
            out.add(m.zeros(p.getShape()));
        }
        return out;
    }

    private static void add(List<NDArray> sums, List<NDArray> grads) {
        for (int i = 0; i < grads.size(); i++) {
            sums.get(i).addi(grads.get(i));
        }
    }

    /** PyTorch's clip_grad_norm_ over the LoRA gradients (the official clips model.parameters(), not the L0 module). */
    private void clip(List<NDArray> grads) {
        if (o.maxGradNorm() <= 0) {
            return;
        }
        double norm = norm(grads);
        if (norm > o.maxGradNorm()) {
            double coef = o.maxGradNorm() / (norm + 1e-6);
            grads.forEach(g -> g.muli(coef));
        }
    }

    /** The prompt's tokens then window {@code first .. first + microBatch - 1}, as [microBatch, prompt + seqLen]. */
    private NDArray ids(NDManager m, int first) {
        int t = prompt.length + o.seqLen();
        long[] flat = new long[o.microBatch() * t];
        for (int i = 0; i < o.microBatch(); i++) {
            System.arraycopy(prompt, 0, flat, i * t, prompt.length);
            System.arraycopy(windows[first + i], 0, flat, i * t + prompt.length, o.seqLen());
        }
        return m.create(flat, new Shape(o.microBatch(), t));
    }

    static int seedFor(long seed, int step, int micro) {
        return new SplittableRandom(seed ^ (0x9E3779B97F4A7C15L * (step * 4096L + micro + 1))).nextInt() & Integer.MAX_VALUE;
    }

    // ---------------------------------------------------------------- checkpoints

    private JsonNode comparable() {
        com.fasterxml.jackson.databind.node.ObjectNode n = JSON.valueToTree(o);
        n.remove("checkpointEvery");
        n.set("lora", JSON.valueToTree(o.lora().orderedTargets()));
        n.put("loraRank", o.lora().rank()).put("loraAlpha", o.lora().alpha()).put("loraDropout", o.lora().dropout());
        return n;
    }

    private void checkpoint(int step, List<Point> history, Map<String, NDArray> loraTensors, Map<String, NDArray> alphas,
                            Map<String, NDArray> lambdas, AdamW loraOpt, AdamW alphaOpt, AdamW lambdaOpt) throws IOException {
        if (checkpoints == null) {
            return;
        }
        Files.createDirectories(checkpoints);
        Path target = checkpoints.resolve(String.format("%s%06d", PREFIX, step));
        Path tmp = AtomicDirectory.createTemp(target);
        try {
            Map<String, NDArray> maskTensors = new LinkedHashMap<>(alphas);
            maskTensors.putAll(lambdas);
            Map<String, NDArray> moments = new LinkedHashMap<>();
            moments.putAll(loraOpt.state(new ArrayList<>(loraTensors.keySet())));
            moments.putAll(alphaOpt.state(new ArrayList<>(alphas.keySet())));
            moments.putAll(lambdaOpt.state(new ArrayList<>(lambdas.keySet())));
            F32Tensors.write(tmp.resolve("adapter.safetensors"), loraTensors, Map.of("format", "pt"));
            F32Tensors.write(tmp.resolve("masks.safetensors"), maskTensors, Map.of("format", "pt"));
            F32Tensors.write(tmp.resolve("optimizer.safetensors"), moments, Map.of("format", "pt"));
            JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.resolve("state.json").toFile(),
                    new State(step, loraOpt.steps(), alphaOpt.steps(), comparable(), history));
            OutputGuard.writeMarker(tmp, "compresso-checkpoint");
            AtomicDirectory.replace(tmp, target);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
        for (Path old : list(checkpoints)) {
            if (!old.equals(target)) {
                AtomicDirectory.deleteTree(old);
            }
        }
    }

    private State restore(Path dir, Map<String, NDArray> loraTensors, Map<String, NDArray> alphas, Map<String, NDArray> lambdas,
                          AdamW loraOpt, AdamW alphaOpt, AdamW lambdaOpt) {
        State s;
        try {
            s = JSON.readValue(dir.resolve("state.json").toFile(), State.class);
        } catch (IOException e) {
            throw new IllegalArgumentException(dir.resolve("state.json") + ": unreadable checkpoint state: " + e.getMessage());
        }
        if (!s.options().toString().equals(comparable().toString())) {
            throw new IllegalArgumentException(dir + ": this checkpoint was written with other options (" + s.options()
                    + "); run with the same options to resume, or --overwrite to start over");
        }
        copy(dir.resolve("adapter.safetensors"), loraTensors);
        Map<String, NDArray> maskTensors = new LinkedHashMap<>(alphas);
        maskTensors.putAll(lambdas);
        copy(dir.resolve("masks.safetensors"), maskTensors);
        Map<String, float[]> moments = new HashMap<>();
        F32Tensors.read(dir.resolve("optimizer.safetensors")).forEach((k, v) -> moments.put(k, v.data()));
        loraOpt.restore(new ArrayList<>(loraTensors.keySet()), moments, s.loraSteps());
        alphaOpt.restore(new ArrayList<>(alphas.keySet()), moments, s.maskSteps());
        lambdaOpt.restore(new ArrayList<>(lambdas.keySet()), moments, s.maskSteps());
        return s;
    }

    private static void copy(Path file, Map<String, NDArray> into) {
        Map<String, F32Tensors.Loaded> saved = F32Tensors.read(file);
        for (Map.Entry<String, NDArray> e : into.entrySet()) {
            F32Tensors.Loaded t = saved.get(e.getKey());
            if (t == null || !new Shape(t.shape()).equals(e.getValue().getShape())) {
                throw new IllegalArgumentException(file + ": tensor '" + e.getKey() + "' is missing or has another shape than this run's");
            }
            F32Tensors.copyInto(e.getValue(), t.data());
        }
    }

    static Path latest(Path dir) {
        List<Path> all = list(dir);
        return all.isEmpty() ? null : all.get(all.size() - 1);
    }

    private static List<Path> list(Path dir) {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().matches(PREFIX + "\\d+"))
                    .filter(p -> Files.isRegularFile(p.resolve("state.json"))).sorted().toList();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(dir + ": " + e.getMessage(), e);
        }
    }
}
