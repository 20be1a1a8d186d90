package dev.lopper.training.job;

import dev.lopper.training.loop.Checkpoints;
import dev.lopper.training.loop.LossCurve;
import dev.lopper.training.loop.LossPass;
import dev.lopper.training.loop.StreamedPass;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.loop.TrainingMethod;
import dev.lopper.training.loop.LossTerm;
import dev.lopper.training.lora.LoraTrainee;
import dev.lopper.training.loop.TrainingData;
import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.lora.Merge;
import dev.lopper.training.lora.PeftIo;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.OutputGuard;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * A whole recovery run, as {@code lopper recover} does it: LoRA training on a (pruned) model, then the adapter in
 * PEFT's layout, the merged model and the loss curve, all in one output directory:
 *
 * <pre>
 *   OUT/checkpoints/step-NNNNNN/   the newest checkpoint (a rerun of the same request continues from it)
 *   OUT/adapter/                   adapter_config.json + adapter_model.safetensors (PEFT)
 *   OUT/merged/                    the model with W + (alpha / r) B A folded in (HF directory)
 *   OUT/loss.csv, OUT/loss.png     training loss per step and validation loss every evalEvery steps
 *   OUT/recover.json               what was asked (model, data, options)
 * </pre>
 *
 * <pre>{@code
 * Recovery.Request r = new Recovery.Request(pruned, data, null, out, LoraConfig.defaults(), TrainOptions.defaults(200),
 *         0.05, 16, Device.cpu(), DataType.FLOAT32, false, false);
 * Recovery.Outcome o = Recovery.run(r, Trainer.Listener.NONE, trainer -> { });
 * Recovery.run(r, lora-reading method, listener, trainer -> { });     // a method's hooks on the same loop (LoRAPrune)
 * }</pre>
 */
public final class Recovery {
    public static final String REQUEST_FILE = "recover.json";

    private Recovery() {
    }

    /**
     * @param val validation text, or null to hold out the last {@code valFraction} of {@code data}
     * @param mergedType dtype of the merged model's tensors (null: as the base stored them)
     * @param overwrite replace an existing OUT that Lopper wrote (otherwise an existing recovery OUT is resumed)
     * @param stream hold one decoder layer's weights at a time ({@link StreamedPass}) instead of the whole model
     */
    public record Request(Path model, Path data, Path val, Path out, LoraConfig lora, TrainOptions options, double valFraction,
                          int valWindows, Device device, DataType mergedType, boolean overwrite, boolean stream) {
        /** The same request, with the model's layers streamed from disk (or not). */
        public Request withStream(boolean s) {
            return new Request(model, data, val, out, lora, options, valFraction, valWindows, device, mergedType, overwrite, s);
        }
    }

    /** What a run produced; {@code merged}, {@code adapter} and {@code png} null when it was interrupted. */
    public record Outcome(Trainer.Result train, long trainableParameters, Path merged, Path adapter, Path csv, Path png) {
    }

    /**
     * Runs (or resumes) the request.
     *
     * @param onStart gets the trainer before it starts (a Ctrl-C handler calls {@link Trainer#requestStop})
     */
    public static Outcome run(Request r, Trainer.Listener listener, Consumer<Trainer<?>> onStart) throws IOException {
        return run(r, TrainingMethod.none(), listener, onStart);
    }

    /** As above, with a method's hooks in the loop (LoRAPrune reads every step's adapter gradients). */
    public static Outcome run(Request r, TrainingMethod<? super LoraTrainee> method, Trainer.Listener listener,
                              Consumer<Trainer<?>> onStart) throws IOException {
        try (ModelDir md = ModelDir.open(r.model())) {
            return run(r, md, prepare(r), method, listener, onStart); // the model is checked before OUT is touched
        }
    }

    private static Outcome run(Request r, ModelDir md, boolean resume, TrainingMethod<? super LoraTrainee> method,
                               Trainer.Listener listener, Consumer<Trainer<?>> onStart) throws IOException {
        try (LlamaModel model = r.stream() ? null : md.loadModel(r.device());
             LoraAdapters lora = LoraAdapters.create(md.config(), r.lora(), r.options().seed(), r.device())) {
            if (lora.adapters().isEmpty()) {
                throw new IllegalArgumentException(r.model() + ": no layer runs any of the targeted projections " + r.lora().orderedTargets());
            }
            TrainingData data = TrainingData.load(r.data(), r.val(), md.tokenizer(), r.options().windows(), r.valWindows(),
                    r.options().seqLen(), r.valFraction(), r.options().seed());
            if (resume) {
                checkSameInputs(r);
            } else {
                new ObjectMapper().writerWithDefaultPrettyPrinter().writeValue(r.out().resolve(REQUEST_FILE).toFile(), requestJson(r));
            }
            LossPass pass = r.stream() ? new StreamedPass(md.config(), md.checkpoint(), LossTerm.CAUSAL_LM)
                    : LossPass.inMemory(model, LossTerm.CAUSAL_LM);
            Trainer<LoraTrainee> trainer = new Trainer<>(new LoraTrainee(pass, lora, r.options()), method, data, r.options(),
                    r.out().resolve("checkpoints"), listener);
            onStart.accept(trainer);
            Trainer.Result result = trainer.run();
            Path csv = r.out().resolve("loss.csv");
            Path png = r.out().resolve("loss.png");
            LossCurve.writeCsv(result.history(), csv);
            if (result.interrupted()) {
                // no PNG: AWT cannot start while the JVM shuts down (Ctrl-C); the next run draws it
                return new Outcome(result, lora.parameterCount(), null, null, csv, null);
            }
            LossCurve.writePng(result.history(), png, "lopper recover " + r.model().getFileName());
            Path adapter = r.out().resolve("adapter");
            PeftIo.save(lora, adapter, r.model().toString());
            Path merged = r.out().resolve("merged");
            Merge.save(md, lora, merged, r.mergedType());
            return new Outcome(result, lora.parameterCount(), merged, adapter, csv, png);
        }
    }

    /**
     * Makes OUT ready: an existing recovery directory is resumed (unless {@code overwrite}); anything else goes
     * through {@link OutputGuard} and OUT is (re)created empty with Lopper's marker. Returns whether it resumes.
     */
    static boolean prepare(Request r) throws IOException {
        return prepareOut(r.out(), r.overwrite(), "recover", REQUEST_FILE, r.model(), r.data(), r.val());
    }

    /** {@link #prepare} for any run that keeps its request in {@code requestFile} and marks OUT with {@code marker}. */
    static boolean prepareOut(Path out, boolean overwrite, String marker, String requestFile, Path... inputs) throws IOException {
        OutputGuard.checkNotOverlapping(out, "--out", inputs);
        if (!overwrite && OutputGuard.isLopperOutput(out) && Files.isRegularFile(out.resolve(requestFile))) {
            return true;
        }
        OutputGuard.checkDirectory(out, overwrite, "--out", inputs);
        Path tmp = AtomicDirectory.createTemp(out);
        try {
            OutputGuard.writeMarker(tmp, marker);
            AtomicDirectory.replace(tmp, out);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
        return false;
    }

    /** A resumed run must read the same model and data (the options are checked against the checkpoint). */
    private static void checkSameInputs(Request r) throws IOException {
        com.fasterxml.jackson.databind.JsonNode saved = new ObjectMapper().readTree(r.out().resolve(REQUEST_FILE).toFile());
        ObjectNode now = requestJson(r);
        for (String f : new String[] {"model", "data", "val", "val_fraction", "val_windows"}) {
            if (!saved.path(f).toString().equals(now.path(f).toString())) {
                throw new IllegalArgumentException("--out " + r.out() + ": holds a recovery run with " + f + " " + saved.path(f)
                        + ", not " + now.path(f) + "; run the same command to resume it, or pass --overwrite to start over");
            }
        }
    }

    private static ObjectNode requestJson(Request r) {
        ObjectMapper json = new ObjectMapper();
        ObjectNode n = json.createObjectNode();
        n.put("model", r.model().toAbsolutePath().toString());
        n.put("data", r.data().toAbsolutePath().toString());
        n.put("val", r.val() == null ? null : r.val().toAbsolutePath().toString());
        n.put("val_fraction", r.valFraction());
        n.put("val_windows", r.valWindows());
        n.set("lora", Checkpoints.tree(r.lora()));
        n.set("options", json.valueToTree(r.options()));
        return n;
    }
}
