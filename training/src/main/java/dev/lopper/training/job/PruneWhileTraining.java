package dev.lopper.training.job;

import dev.lopper.training.loop.AdamW;
import dev.lopper.training.loop.Checkpoints;
import dev.lopper.training.loop.FullModel;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.loop.FullTrainee;
import dev.lopper.training.loop.LossTerm;
import dev.lopper.training.loop.TrainingMethod;
import dev.lopper.training.loop.LossCurve;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.TrainingData;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import dev.lopper.training.method.Bip;
import dev.lopper.training.method.EfficientLlm;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;

/**
 * Pruning while training the whole model ({@code --method efficientllm | bip}), one resumable run in one output
 * directory:
 *
 * <pre>
 *   OUT/checkpoints/step-NNNNNN/   the newest checkpoint: the current (cut) model, AdamW's moments, the method's state
 *   OUT/pruned/                    the final model, a plain HF directory (fp32) with lopper_plan.json
 *   OUT/loss.csv, OUT/loss.png     training loss per step, validation loss every evalEvery steps
 *   OUT/size.csv, OUT/size.png     parameters after every step
 *   OUT/prune-train.json           what was asked (model, data, method, ratio)
 * </pre>
 *
 * <pre>{@code
 * PruneWhileTraining.Request r = new PruneWhileTraining.Request(model, "efficientllm", 0.5, data, null, 0.05, 16, out,
 *         TrainOptions.defaults(200), Device.cpu(), false, null);
 * PruneWhileTraining.Outcome o = PruneWhileTraining.run(r, Trainer.Listener.NONE, t -> { });
 * }</pre>
 */
public final class PruneWhileTraining {
    public static final String REQUEST_FILE = "prune-train.json";
    public static final List<String> METHODS = List.of(EfficientLlm.NAME, Bip.NAME);
    private static final ObjectMapper JSON = new ObjectMapper();

    private PruneWhileTraining() {
    }

    /**
     * @param method {@value EfficientLlm#NAME} or {@value Bip#NAME}
     * @param ratio fraction of prunable (attention + MLP) parameters removed
     * @param val validation text, or null to hold out the last {@code valFraction} of {@code data}
     * @param overwrite replace an existing OUT that Lopper wrote (otherwise an existing run is resumed)
     * @param modelOut where the final model goes (the schedule engine's {@code --out}), or null for {@code OUT/pruned}
     */
    public record Request(Path model, String method, double ratio, Path data, Path val, double valFraction, int valWindows,
                          Path out, TrainOptions options, Device device, boolean overwrite, Path modelOut) {
        public Request {
            if (!METHODS.contains(method)) {
                throw new IllegalArgumentException("--method " + method + ": expected one of " + METHODS);
            }
            if (!(ratio >= 0 && ratio < 1)) {
                throw new IllegalArgumentException("--ratio " + ratio + ": expected a number in [0, 1)");
            }
        }
    }

    /** What a run produced; {@code pruned} and {@code plan} null when it was interrupted. */
    public record Outcome(Trainer.Result train, long paramsBefore, long paramsAfter, long trainingBytes, Path pruned,
                          PruningPlan plan, Path lossCsv, Path sizeCsv) {
    }

    /** Bytes full training holds for {@code model}, stated before anything is loaded. */
    public static long trainingBytes(Path model) {
        try (ModelDir d = ModelDir.open(model)) {
            return FullModel.trainingBytes(d.config());
        }
    }

    /** Runs (or resumes) the request; {@code onStart} gets the trainer (a Ctrl-C handler calls requestStop). */
    public static Outcome run(Request r, Trainer.Listener listener, Consumer<Trainer<?>> onStart) throws IOException {
        try (ModelDir md = ModelDir.open(r.model())) {
            ModelConfig config = md.config();
            dev.lopper.calibration.gradient.GradientEngine.checkSupported(config); // Qwen3's q/k norms: no gradient path
            boolean resume = Recovery.prepareOut(r.out(), r.overwrite(), "prune-train", REQUEST_FILE, r.model(), r.data(), r.val());
            if (r.modelOut() != null) {
                OutputGuard.checkDirectory(r.modelOut(), r.overwrite() || resume, "--out", r.model(), r.data(), r.val());
            }
            ObjectNode request = requestJson(r);
            if (resume) {
                ObjectNode saved = (ObjectNode) JSON.readTree(r.out().resolve(REQUEST_FILE).toFile());
                if (!saved.toString().equals(request.toString())) { // as text: a long reads back as an int node
                    throw new IllegalArgumentException("--out " + r.out() + ": holds a run of another request (" + saved
                            + "); run the same command to resume it, or pass --overwrite to start over");
                }
            } else {
                JSON.writerWithDefaultPrettyPrinter().writeValue(r.out().resolve(REQUEST_FILE).toFile(), request);
            }
            FullModel model = FullModel.load(config, md.checkpoint(), r.device());
            long before = model.parameterCount();
            TrainingMethod<FullTrainee> method;
            FullTrainee trainee;
            try {
                if (r.method().equals(Bip.NAME)) {
                    Bip bip = new Bip(model, Bip.Settings.paper(r.ratio(), r.options().steps()));
                    method = bip;
                    trainee = new FullTrainee(model, r.options(), bip::transform, LossTerm.CAUSAL_LM);
                } else {
                    method = new EfficientLlm(config, new EfficientLlm.Settings(r.ratio(), Math.min(4, r.options().steps()), 0.5, r.options().steps()));
                    trainee = new FullTrainee(model, r.options(), () -> FullModel.LayerTransform.NONE, LossTerm.CAUSAL_LM);
                }
            } catch (RuntimeException e) {
                model.close();
                throw e;
            }
            TrainingData data = TrainingData.load(r.data(), r.val(), md.tokenizer(), r.options().windows() * method.batchesPerStep(),
                    r.valWindows(), r.options().seqLen(), r.valFraction(), r.options().seed());
            Trainer<FullTrainee> trainer = new Trainer<>(trainee, method, data, r.options(), r.out().resolve("checkpoints"), listener);
            try {
                onStart.accept(trainer);
                Trainer.Result result = trainer.run();
                Path loss = r.out().resolve("loss.csv");
                Path size = r.out().resolve("size.csv");
                LossCurve.writeCsv(result.history(), loss);
                if (result.interrupted()) {
                    LossCurve.writeSize(result.history(), size, null, null); // no PNG while the JVM shuts down
                    return new Outcome(result, before, trainee.model().parameterCount(), FullModel.trainingBytes(config), null, null, loss, size);
                }
                String title = "lopper prune --method " + r.method() + " --ratio " + r.ratio() + " " + r.model().getFileName();
                LossCurve.writePng(result.history(), r.out().resolve("loss.png"), title);
                LossCurve.writeSize(result.history(), size, r.out().resolve("size.png"), title);
                PruningPlan plan = plan(r, md, method, trainee.model().config());
                Path pruned = r.modelOut() != null ? r.modelOut() : r.out().resolve("pruned");
                save(trainee.model(), pruned, r.model(), plan);
                return new Outcome(result, before, trainee.model().parameterCount(), FullModel.trainingBytes(config), pruned, plan, loss, size);
            } finally {
                trainee.model().close();
            }
        }
    }

    /** The plan of what went (original indices), with the run's provenance; the weights are the trained ones. */
    private static PruningPlan plan(Request r, ModelDir md, TrainingMethod<FullTrainee> method, ModelConfig finalConfig) {
        List<LayerSelection> kept = method instanceof EfficientLlm e ? e.units().selections()
                : ((Bip) method).finalSelections();
        ObjectNode options = JSON.createObjectNode();
        options.put("training", "full");
        options.put("steps", r.options().steps());
        options.set("method", method.options());
        PruningPlan base = new PruningPlan(r.method(), options, r.ratio(), List.of("heads", "channels"),
                method instanceof Bip ? "uniform" : "global",
                new PruningPlan.Calibration(r.data().toString(), r.options().windows() * method.batchesPerStep(), r.options().seqLen()),
                r.options().seed(), ModelHash.of(md.path()), PruningPlan.toolVersionString(), List.of(), List.of(), null, null);
        PruningPlan plan = Allocation.toPlan(md.config(), kept, base)
                .withResult(Allocation.result(md.config(), kept, true, true, false, 0, 0));
        if (!Surgery.apply(md.config(), md.checkpoint(), plan).config().layers().equals(finalConfig.layers())) {
            throw new IllegalStateException("the plan does not describe the trained model's shape"); // a bug, not bad input
        }
        return plan;
    }

    /** As {@code Surgery.save}: the model (written beside, then renamed into place), then its plan. */
    private static void save(FullModel model, Path out, Path sideFilesFrom, PruningPlan plan) throws IOException {
        ModelWriter.save(out, model.config(), model.source(), DataType.FLOAT32, sideFilesFrom, ModelWriter.DEFAULT_MAX_SHARD_BYTES,
                Map.of("format", "pt"));
        plan.save(out.resolve(Surgery.PLAN_FILE));
    }

    private static ObjectNode requestJson(Request r) {
        ObjectNode n = JSON.createObjectNode();
        n.put("model", r.model().toAbsolutePath().toString());
        n.put("method", r.method());
        n.put("ratio", r.ratio());
        n.put("data", r.data().toAbsolutePath().toString());
        n.put("val", r.val() == null ? null : r.val().toAbsolutePath().toString());
        n.put("val_fraction", r.valFraction());
        n.put("val_windows", r.valWindows());
        n.set("options", JSON.valueToTree(Checkpoints.comparable(r.options())));
        return n;
    }

    /** "123.4 MiB" */
    public static String mib(long bytes) {
        return String.format(Locale.ROOT, "%.1f MiB", bytes / (1024.0 * 1024));
    }
}
