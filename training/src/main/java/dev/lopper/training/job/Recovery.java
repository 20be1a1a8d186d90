package dev.lopper.training.job;

import dev.lopper.model.WeightNames;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.training.distill.Distillation;
import dev.lopper.training.distill.KdLoss;
import dev.lopper.training.distill.TeacherCache;
import dev.lopper.training.distill.TeacherForward;
import dev.lopper.training.loop.Checkpoints;
import dev.lopper.training.loop.FullModel;
import dev.lopper.training.loop.FullTrainee;
import dev.lopper.training.loop.LossPass;
import dev.lopper.training.loop.StreamedPass;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.Trainee;
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
import java.util.function.UnaryOperator;

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
 * Recovery.Request r = new Recovery.Request(pruned, out, Device.cpu(), false, new Recovery.Settings(data, null,
 *         LoraConfig.defaults(), TrainOptions.defaults(200), 0.05, 16, DataType.FLOAT32, false, null, false));
 * Recovery.Outcome o = Recovery.run(r, Trainer.Listener.NONE, trainer -> { });
 * }</pre>
 */
public final class Recovery {
    private Recovery() {
    }

    /**
     * How a recovery trains, the same for {@code lopper recover} and {@code prune --recover-steps}.
     *
     * @param data the training text (with {@code prune --recover-steps}: null for the pruning's calibration text)
     * @param val validation text, or null to hold out the last {@code valFraction} of {@code data}
     * @param mergedType dtype of the merged model's tensors (null: as the base stored them)
     * @param stream hold one decoder layer's weights at a time ({@link StreamedPass}) instead of the whole model
     * @param distill distil from a dense teacher ({@link KdLoss}), or null for the causal-LM loss
     * @param full train every weight ({@link FullTrainee}: fp32 weights, gradients and two AdamW moments in memory)
     *             instead of LoRA adapters; {@code lora} is then unused
     */
    public record Settings(Path data, Path val, LoraConfig lora, TrainOptions options, double valFraction, int valWindows,
                           DataType mergedType, boolean stream, Distillation distill, boolean full) {
        public Settings {
            if (full && stream) {
                throw new IllegalArgumentException("--full trains every weight in memory; --stream streams a frozen model's layers for LoRA: give one of them");
            }
        }

        /** {@code first}, then the training and validation text, the teacher and its cache: the inputs OUT may not overlap (nulls ignored). */
        Path[] inputs(Path... first) {
            return java.util.stream.Stream.concat(java.util.Arrays.stream(first), java.util.stream.Stream.of(data, val,
                    distill == null ? null : distill.teacher(), distill == null ? null : distill.cache())).toArray(Path[]::new);
        }

        /** These settings training on {@code data} and {@code val} instead. */
        Settings withData(Path data, Path val) {
            return new Settings(data, val, lora, options, valFraction, valWindows, mergedType, stream, distill, full);
        }
    }

    /**
     * @param model the model to train
     * @param out where the merged model goes (its job folder is {@code OUT.job} beside it)
     * @param overwrite replace an OUT that Lopper wrote and start over (otherwise the same job is resumed)
     */
    public record Request(Path model, Path out, Device device, boolean overwrite, Settings settings) {
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
        Settings s = r.settings();
        try (ModelDir md = ModelDir.open(r.model())) { // the model is checked before OUT is touched
            String teacherHash = s.distill() == null ? null : s.distill().check(r.model(), md.config());
            ObjectNode request = new ObjectMapper().createObjectNode().put("model", r.model().toAbsolutePath().toString());
            JobDir job = JobDir.open(r.out(), "recover", trainingJson(request, s, teacherHash), r.overwrite(), s.inputs(r.model()));
            Outcome o = train(job, md, r.device(), s, teacherHash, listener, onStart);
            if (o.merged() != null) {
                job.finish();
            }
            return o;
        }
    }

    /**
     * Training of {@code md} with settings {@code s} inside {@code job}, checkpoints and curve in the job folder:
     * LoRA adapters (saved to the job folder, then merged into the model written to {@code job.out()}), or with
     * {@code full} every weight ({@link FullTrainee}; the trained model written to {@code job.out()}, fp32 unless
     * {@code mergedType}).
     */
    static Outcome train(JobDir job, ModelDir md, Device device, Settings s, String teacherHash, Trainer.Listener listener,
                         Consumer<Trainer<?>> onStart) throws IOException {
        try (LlamaModel model = s.stream() || s.full() ? null : md.loadModel(device);
             LoraAdapters lora = s.full() ? null : LoraAdapters.create(md.config(), s.lora(), s.options().seed(), device)) {
            if (lora != null && lora.adapters().isEmpty()) {
                throw new IllegalArgumentException(md.path() + ": no layer runs any of the targeted projections " + s.lora().orderedTargets());
            }
            TrainingData data = TrainingData.load(s.data(), s.val(), md.tokenizer(), s.options().windows(), s.valWindows(),
                    s.options().seqLen(), s.valFraction(), s.options().seed());
            if (s.full()) {
                listener.message(String.format(java.util.Locale.ROOT, "full-parameter training: %s (weights, gradients, 2 AdamW moments, fp32) plus activations",
                        PruneWhileTraining.mib(FullModel.trainingBytes(md.config()))));
            }
            try (Teacher teacher = Teacher.open(s.distill(), md, teacherHash, data, listener);
                 FullTrainee full = s.full() ? new FullTrainee(FullModel.load(md.config(), md.checkpoint(), device), s.options(),
                         () -> FullModel.LayerTransform.NONE, teacher.term()) : null) {
                Trainee trainee = full != null ? full
                        : new LoraTrainee(s.stream() ? new StreamedPass(md.config(), md.checkpoint(), teacher.term())
                                : LossPass.inMemory(model, teacher.term()), lora, s.options());
                Trainer<Trainee> trainer = new Trainer<>(trainee, TrainingMethod.none(), data, s.options(), job.checkpoints(), listener);
                Trainer.Result result = job.train(trainer, onStart, UnaryOperator.identity(),
                        "lopper recover " + (s.full() ? "--full " : "") + md.path().getFileName());
                long params = full != null ? full.modelParameters() : lora.parameterCount();
                if (result.interrupted()) {
                    return new Outcome(result, params, null, null, job.dir());
                }
                if (full != null) {
                    DataType as = s.mergedType() != null ? s.mergedType() : md.checkpoint().storedType(WeightNames.EMBED);
                    ModelWriter.save(job.out(), full.model().config(), full.model().source(), as, md.path(), ModelWriter.DEFAULT_MAX_SHARD_BYTES,
                            new java.util.TreeMap<>(java.util.Map.of("format", "pt", "lopper_recovery", "full-parameter")));
                    return new Outcome(result, params, job.out(), null, job.dir());
                }
                Path adapter = job.resolve("adapter");
                PeftIo.save(lora, adapter, md.path().toString());
                Merge.save(md, lora, job.out(), s.mergedType());
                return new Outcome(result, params, job.out(), adapter, job.dir());
            }
        }
    }

    /** The loss term of a request and what it holds open: the causal-LM loss, or the teacher (streamed or cached). */
    private record Teacher(LossTerm term, TeacherForward forward, TeacherCache cache) implements AutoCloseable {
        static Teacher open(Distillation d, ModelDir student, String hash, TrainingData data, Trainer.Listener listener) throws IOException {
            if (d == null) {
                return new Teacher(LossTerm.CAUSAL_LM, null, null);
            }
            TeacherForward forward = TeacherForward.open(d.teacher(), hash);
            try {
                TeacherCache cache = d.cache() == null ? null
                        : TeacherCache.openOrBuild(d.cache(), forward, hash, d, data.train(), listener::message);
                int[] studentLayers = d.studentLayers(student.config());
                int[] teacherLayers = Distillation.teacherLayers(student.path(), student.config(), forward.config(), studentLayers);
                return new Teacher(new KdLoss(d, forward, cache, studentLayers, teacherLayers), forward, cache);
            } catch (RuntimeException | IOException e) {
                forward.close();
                throw e;
            }
        }

        @Override
        public void close() throws IOException {
            if (cache != null) {
                cache.close();
            }
            if (forward != null) {
                forward.close();
            }
        }
    }

    /** The training settings {@code s} into {@code n} (recover's job.json, and prune --recover-steps' "recover"). */
    static ObjectNode trainingJson(ObjectNode n, Settings s, String teacherHash) {
        JobDir.putData(n, s.data(), s.val(), s.valFraction(), s.valWindows());
        n.set("lora", Checkpoints.tree(s.lora()));
        n.set("options", new ObjectMapper().valueToTree(s.options()));
        if (s.full()) {
            n.put("training", "full"); // LoRA jobs keep the job.json they always had: their resume is unchanged
        }
        if (s.distill() != null) {
            n.set("distill", s.distill().json(teacherHash));
        }
        return n;
    }
}
