package dev.lopper.training.job;

import dev.lopper.training.loop.Checkpoints;
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

import java.io.IOException;
import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * A whole recovery run, as {@code lopper recover} does it: LoRA training on a (pruned) model, in the one job layout
 * ({@link JobDir}):
 *
 * <pre>
 *   OUT/                     the model with W + (alpha / r) B A folded in (HF directory), with curve.csv/png
 *   OUT.job/job.json         what was asked (model, data, LoRA and optimizer settings)
 *   OUT.job/checkpoints/     the newest checkpoint (the same command continues from it)
 *   OUT.job/adapter/         adapter_config.json + adapter_model.safetensors (PEFT)
 *   OUT.job/curve.csv, .png  training loss per step, validation loss every evalEvery steps, learning rate
 * </pre>
 *
 * <pre>{@code
 * Recovery.Request r = new Recovery.Request(pruned, data, null, out, LoraConfig.defaults(), TrainOptions.defaults(200),
 *         0.05, 16, Device.cpu(), DataType.FLOAT32, false, false);
 * Recovery.Outcome o = Recovery.run(r, Trainer.Listener.NONE, trainer -> { });
 * }</pre>
 */
public final class Recovery {
    private Recovery() {
    }

    /**
     * @param val validation text, or null to hold out the last {@code valFraction} of {@code data}
     * @param out where the merged model goes (its job folder is {@code OUT.job} beside it)
     * @param mergedType dtype of the merged model's tensors (null: as the base stored them)
     * @param overwrite replace an OUT that Lopper wrote and start over (otherwise the same job is resumed)
     * @param stream hold one decoder layer's weights at a time ({@link StreamedPass}) instead of the whole model
     */
    public record Request(Path model, Path data, Path val, Path out, LoraConfig lora, TrainOptions options, double valFraction,
                          int valWindows, Device device, DataType mergedType, boolean overwrite, boolean stream) {
    }

    /**
     * What a run produced; {@code merged} (= OUT) and {@code adapter} null when it was interrupted.
     *
     * @param job the job folder ({@code OUT.job}: checkpoints, adapter, curve)
     */
    public record Outcome(Trainer.Result train, long trainableParameters, Path merged, Path adapter, Path job) {
        public Path curve() {
            return job.resolve(Curve.CSV);
        }
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
        try (ModelDir md = ModelDir.open(r.model())) { // the model is checked before OUT is touched
            JobDir job = JobDir.open(r.out(), "recover", requestJson(r), r.overwrite(), r.model(), r.data(), r.val());
            Outcome o = train(job, md, r, method, listener, onStart);
            if (o.merged() != null) {
                job.finish();
            }
            return o;
        }
    }

    /**
     * LoRA training of {@code md} with the request's settings inside {@code job}: checkpoints, curve and adapter in
     * the job folder; when training finishes, the merged model is written to {@code job.out()}.
     */
    static Outcome train(JobDir job, ModelDir md, Request r, TrainingMethod<? super LoraTrainee> method, Trainer.Listener listener,
                         Consumer<Trainer<?>> onStart) throws IOException {
        try (LlamaModel model = r.stream() ? null : md.loadModel(r.device());
             LoraAdapters lora = LoraAdapters.create(md.config(), r.lora(), r.options().seed(), r.device())) {
            if (lora.adapters().isEmpty()) {
                throw new IllegalArgumentException(md.path() + ": no layer runs any of the targeted projections " + r.lora().orderedTargets());
            }
            TrainingData data = TrainingData.load(r.data(), r.val(), md.tokenizer(), r.options().windows(), r.valWindows(),
                    r.options().seqLen(), r.valFraction(), r.options().seed());
            LossPass pass = r.stream() ? new StreamedPass(md.config(), md.checkpoint(), LossTerm.CAUSAL_LM)
                    : LossPass.inMemory(model, LossTerm.CAUSAL_LM);
            Trainer<LoraTrainee> trainer = new Trainer<>(new LoraTrainee(pass, lora, r.options()), method, data, r.options(),
                    job.checkpoints(), listener);
            onStart.accept(trainer);
            Trainer.Result result = trainer.run();
            // no PNG when interrupted: AWT cannot start while the JVM shuts down (Ctrl-C); the next run draws it
            Curve.write(result.history(), job.dir(), result.interrupted() ? null : "lopper recover " + md.path().getFileName());
            if (result.interrupted()) {
                return new Outcome(result, lora.parameterCount(), null, null, job.dir());
            }
            Path adapter = job.resolve("adapter");
            PeftIo.save(lora, adapter, md.path().toString());
            Merge.save(md, lora, job.out(), r.mergedType());
            return new Outcome(result, lora.parameterCount(), job.out(), adapter, job.dir());
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
