package dev.lopper.training.job;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.calibration.CalibrationData;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.loop.TrainingData;
import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.Merge;
import dev.lopper.training.method.CompressoOptions;
import dev.lopper.training.method.CompressoTraining;
import dev.lopper.training.method.HardMasks;
import dev.lopper.training.method.L0Masks;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;

/**
 * The job of {@code lopper prune MODEL --method compresso}: hard-concrete masks on KV groups and MLP channels
 * trained jointly with LoRA under the Lagrangian target-size constraint ({@link CompressoTraining} on the one
 * {@link Trainer}), then the deterministic masks, LoRA merged, the masks' values folded in and the zeroed units
 * removed by surgery ({@link HardMasks}). The one job layout ({@link JobDir}): the pruned model and its plan in
 * {@code OUT}; checkpoints and the curve (LM loss, Lagrangian, expected and target sparsity, multipliers, LoRA
 * rate per step) in {@code OUT.job/}; the same command resumes from the newest checkpoint.
 *
 * <p>Defaults are the official Compresso ones ({@link CompressoOptions#defaults}); the request's training and LoRA
 * options carry them where the user gave nothing ({@link #trainDefaults}). Method options in the request's
 * criterion options: {@code reg-lr} (masks and Lagrange multipliers) and {@code prompt}.
 *
 * <pre>{@code
 * PruneSchedule.Result r = Compresso.run(request, trainer -> { });   // request.prune().criterion() "compresso"
 * }</pre>
 */
public final class Compresso {
    public static final String NAME = CompressoTraining.NAME;

    private Compresso() {
    }

    /** Compresso's official training settings over {@code steps} steps, as the engine's training options. */
    static TrainOptions trainDefaults(int steps, long seed) {
        int every = Math.max(1, steps / 10);
        return CompressoOptions.defaults(0.5, steps).train().withSeed(seed).withEvery(every, every);
    }

    /** The request as Compresso's options (the request's training options already hold its defaults or the user's). */
    static CompressoOptions options(ScheduleRequest r) {
        TrainOptions t = r.train();
        CompressoOptions d = CompressoOptions.defaults(r.prune().ratio(), r.steps());
        Map<String, String> m = r.prune().criterionOptions();
        double regLr = m.containsKey("reg-lr") ? Double.parseDouble(m.get("reg-lr")) : d.regLr();
        TrainOptions train = d.train().withBatch(t.microBatch(), t.accumulation(), t.seqLen()).withLearningRate(t.learningRate())
                .withEvery(1, t.checkpointEvery()).withSeed(t.seed());
        return new CompressoOptions(train, d.target(), regLr, d.droprateInit(), d.prepruningFraction(), d.warmupFraction(),
                m.get("prompt"), r.lora());
    }

    /** Runs (or resumes) the request; {@code onStart} gets the trainer before it starts (for a Ctrl-C handler). */
    public static PruneSchedule.Result run(ScheduleRequest r, Consumer<Trainer<?>> onStart) throws IOException {
        if (r.data() == null) {
            throw new IllegalArgumentException("--train-data is required with --method compresso (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        if (!Files.exists(r.data())) {
            throw new IllegalArgumentException("--train-data " + r.data() + ": does not exist (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        if (r.steps() == null) {
            throw new IllegalArgumentException("--steps is required with --method compresso (optimizer steps of joint mask and LoRA training)");
        }
        if (r.iterations() != null) {
            throw new IllegalArgumentException("--iterative applies to one-shot criteria; --method compresso prunes on its own schedule");
        }
        CompressoOptions o = options(r);
        TrainOptions t = o.train();
        official(r); // a bad ending value fails before any work
        Progress progress = r.prune().progress();
        progress.message(String.format(Locale.ROOT, "compresso target=%s steps=%d lr=%s reg-lr=%s lora r=%d alpha=%s on %s",
                o.target(), t.steps(), t.learningRate(), o.regLr(), o.lora().rank(), o.lora().alpha(), o.lora().orderedTargets()));
        Path out = r.prune().out();
        try (ModelDir md = ModelDir.open(r.prune().model())) {
            JobDir job = JobDir.open(out, "compresso", requestJson(r, o), r.prune().overwrite(), r.prune().model(), r.data());
            long[] stream = CalibrationData.tokenStream(r.data(), md.tokenizer(), "text", "--train-data");
            if (stream.length < t.seqLen() + 1) {
                throw new IllegalArgumentException("--train-data " + r.data() + ": has " + stream.length + " tokens; --train-seq-len "
                        + t.seqLen() + " needs at least " + (t.seqLen() + 1));
            }
            long[][] windows = CalibrationData.sample(stream, t.windows(), t.seqLen(), t.seed());
            long[] prompt = o.prompt() == null || o.prompt().isEmpty() ? new long[0] : md.tokenizer().encode(o.prompt());
            try (LlamaModel model = md.loadModel(r.prune().device());
                 LoraAdapters lora = LoraAdapters.create(md.config(), o.lora(), t.seed(), r.prune().device());
                 L0Masks masks = L0Masks.create(md.config(), o.droprateInit(), t.seed(), r.prune().device())) {
                CompressoTraining training = new CompressoTraining(model, lora, masks, prompt, o);
                Trainer.Result result = job.train(new Trainer<>(training, training, TrainingData.trainOnly(windows), t,
                        job.checkpoints(), PruneSchedule.progressLine(progress, "")), onStart, UnaryOperator.identity(),
                        "lopper prune --method compresso " + r.prune().model().getFileName());
                TrainingInterrupted.ifStopped(result, job.checkpoints());
                PruningPlan plan = finish(md, lora, masks, r, o, out);
                job.finish();
                return new PruneSchedule.Result(out, plan, result.history(), result.resumedFrom());
            }
        }
    }

    /** {@code ending official} (the masks' own per-layer counts) rather than the asked ratio (the default). */
    static boolean official(ScheduleRequest r) {
        String e = r.prune().criterionOptions().get("ending");
        if (e != null && !e.equals("official") && !e.equals("ratio")) {
            throw new IllegalArgumentException("--compresso-ending " + e + ": expected ratio (finish at --ratio; default) or official");
        }
        return "official".equals(e);
    }

    /**
     * Deterministic masks -> plan (by default at the asked ratio, {@link HardMasks#atRatio}; the official ending with
     * {@code ending official}); LoRA merged, mask values folded, surgery; the model written to {@code dir}.
     */
    static PruningPlan finish(ModelDir md, LoraAdapters lora, L0Masks masks, ScheduleRequest r, CompressoOptions o, Path dir)
            throws IOException {
        boolean official = official(r);
        int layers = md.config().numLayers();
        double[][][] z = official ? HardMasks.official(masks, layers) : HardMasks.atRatio(masks, layers, o.target()); // {heads, channels}
        r.prune().progress().message(String.format(Locale.ROOT, "compresso: the masks reached expected sparsity %.4f (target %.4f); %s",
                masks.expectedSparsity(), o.target(), official ? "official ending: each layer's deterministic mask (CoFi's deterministic_z)"
                        : "finishing at the asked ratio: units ranked by their learned log_alpha (--compresso-ending official: the masks' own counts)"));
        ObjectNode opts = o.json();
        opts.put("finalExpectedSparsity", masks.expectedSparsity());
        opts.put("ending", official ? "official" : "ratio");
        PruningPlan plan = HardMasks.plan(md.config(), z[0], z[1]);
        plan = AskedRatio.record(plan, o.target(), md.config(), () -> official ? String.format(Locale.ROOT,
                "the official ending keeps what the masks learned (expected sparsity %.4f); --compresso-ending ratio finishes at --ratio",
                masks.expectedSparsity()) : "one unit of each kind kept per layer", r.prune().progress());
        plan = plan.withProvenance(NAME, opts, o.target(), List.of("heads", "channels"), "learned (hard-concrete masks)",
                new PruningPlan.Calibration(r.data().toString(), o.train().windows(), o.train().seqLen()), o.train().seed()).withModelHash(ModelHash.of(md.path()));
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            TensorMap merged = Merge.merged(md.checkpoint(), lora, m);
            TensorMap folded = HardMasks.fold(md.config(), merged, z[0], z[1], m);
            Surgery.Result result = Surgery.apply(md.config(), folded, plan);
            Surgery.save(result, dir, md.path(), plan, OutputDtype.resolve(r.outputType(), md, r.prune().progress()));
        }
        return plan;
    }

    private static ObjectNode requestJson(ScheduleRequest r, CompressoOptions o) {
        ObjectNode n = new ObjectMapper().createObjectNode();
        n.put("model", r.prune().model().toAbsolutePath().toString());
        n.put("data", r.data().toAbsolutePath().toString());
        ObjectNode options = o.json();
        options.remove("checkpointEvery"); // how often checkpoints are written changes no result
        options.set("lora", dev.lopper.training.loop.Checkpoints.tree(o.lora())); // targets in a fixed order (a Set's is per JVM)
        n.set("options", options);
        return n;
    }
}
