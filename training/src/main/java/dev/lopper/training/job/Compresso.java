package dev.lopper.training.job;

import dev.lopper.training.method.CompressoOptions;
import dev.lopper.training.method.CompressoTraining;
import dev.lopper.training.loop.TrainingData;
import java.util.Map;
import dev.lopper.training.method.HardMasks;
import dev.lopper.training.method.L0Masks;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.calibration.CalibrationData;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.io.TensorMap;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;
import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.loop.LossCurve;
import dev.lopper.training.lora.Merge;
import dev.lopper.training.loop.Trainer;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;

/**
 * A whole Compresso run ({@code lopper prune MODEL --method compresso}): hard-concrete masks on KV groups and
 * MLP channels trained jointly with LoRA under the Lagrangian target-size constraint ({@link CompressoTraining} on the one {@link Trainer}),
 * then the deterministic masks, LoRA merged, the masks' values folded in and the zeroed units removed by
 * surgery ({@link HardMasks}). Everything goes into one output directory:
 *
 * <pre>
 *   OUT/model/            the pruned model (plain HF directory, adapters merged; lopper_plan.json beside it)
 *   OUT/checkpoints/      the newest training checkpoint (the same command resumes from it)
 *   OUT/compresso.csv     per step: LM loss, Lagrangian, expected and target sparsity, lambdas, LoRA lr
 *   OUT/compresso.png     the LM loss per step
 *   OUT/compresso.json    what was asked
 * </pre>
 *
 * <pre>{@code
 * Compresso.Request r = new Compresso.Request(model, data, out, CompressoOptions.defaults(0.3, 200), Device.cpu(), false);
 * Compresso.Outcome o = Compresso.run(r, Trainer.Listener.NONE, t -> { });
 * }</pre>
 */
public final class Compresso {
    public static final String REQUEST_FILE = "compresso.json";

    private Compresso() {
    }

    /**
     * @param out the work directory (checkpoints, curves, the request)
     * @param overwrite replace an OUT Lopper wrote (otherwise an existing Compresso OUT is resumed)
     * @param modelOut where the pruned model goes (the schedule engine's {@code --out}), or null for {@code OUT/model}
     */
    public record Request(Path model, Path data, Path out, CompressoOptions options, Device device, boolean overwrite, Path modelOut) {
        public Request(Path model, Path data, Path out, CompressoOptions options, Device device, boolean overwrite) {
            this(model, data, out, options, device, overwrite, null);
        }

        /** Where the pruned model goes. */
        public Path modelDir() {
            return modelOut != null ? modelOut : out.resolve("model");
        }
    }

    /**
     * @param plan what was removed (null when interrupted)
     * @param model the pruned model directory (null when interrupted)
     */
    public record Outcome(List<Trainer.Point> history, PruningPlan plan, Path model, Path csv, Path png,
                          double finalExpectedSparsity, boolean interrupted) {
    }

    /** Runs (or resumes) the request; {@code onStart} gets the trainer before it starts (for a Ctrl-C handler). */
    public static Outcome run(Request r, Trainer.Listener listener, Consumer<Trainer<?>> onStart) throws IOException {
        try (ModelDir md = ModelDir.open(r.model())) {
            if (r.modelOut() != null) {
                // never destroy what Lopper did not write: checked before anything is written
                boolean resumable = !r.overwrite() && OutputGuard.isLopperOutput(r.out()) && Files.isRegularFile(r.out().resolve(REQUEST_FILE));
                OutputGuard.checkNotOverlapping(r.modelOut(), "--out", r.model(), r.data());
                OutputGuard.checkDirectory(r.modelOut(), r.overwrite() || resumable, "--out", r.model(), r.data());
            }
            boolean resume = prepare(r);
            CompressoOptions o = r.options();
            long[] stream = CalibrationData.tokenStream(r.data(), md.tokenizer(), "text", "--train-data");
            if (stream.length < o.seqLen() + 1) {
                throw new IllegalArgumentException("--train-data " + r.data() + ": has " + stream.length + " tokens; --seq-len "
                        + o.seqLen() + " needs at least " + (o.seqLen() + 1));
            }
            long[][] windows = CalibrationData.sample(stream, o.windows(), o.seqLen(), o.seed());
            long[] prompt = o.prompt() == null || o.prompt().isEmpty() ? new long[0] : md.tokenizer().encode(o.prompt());
            if (resume) {
                checkSameInputs(r);
            } else {
                new ObjectMapper().writerWithDefaultPrettyPrinter().writeValue(r.out().resolve(REQUEST_FILE).toFile(), requestJson(r));
            }
            try (LlamaModel model = md.loadModel(r.device());
                 LoraAdapters lora = LoraAdapters.create(md.config(), o.lora(), o.seed(), r.device());
                 L0Masks masks = L0Masks.create(md.config(), o.droprateInit(), o.seed(), r.device())) {
                CompressoTraining training = new CompressoTraining(model, lora, masks, prompt, o);
                Trainer<CompressoTraining> trainer = new Trainer<>(training, training, TrainingData.trainOnly(windows),
                        training.trainOptions(), r.out().resolve("checkpoints"), listener);
                onStart.accept(trainer);
                Trainer.Result result = trainer.run();
                List<Trainer.Point> history = result.history();
                Path csv = r.out().resolve("compresso.csv");
                writeCsv(history, csv);
                if (result.interrupted()) {
                    return new Outcome(history, null, null, csv, null, masks.expectedSparsity(), true);
                }
                Path png = r.out().resolve("compresso.png");
                LossCurve.writePng(history, png,
                        "lopper compresso " + r.model().getFileName());
                PruningPlan plan = finish(md, lora, masks, r, r.modelDir());
                return new Outcome(history, plan, r.modelDir(), csv, png, masks.expectedSparsity(), false);
            }
        }
    }

    /** Deterministic masks -> plan; LoRA merged, mask values folded, surgery; the model written to {@code dir}. */
    static PruningPlan finish(ModelDir md, LoraAdapters lora, L0Masks masks, Request r, Path dir) throws IOException {
        double[][] heads = masks.deterministicHeads();
        double[][] channels = masks.deterministicChannels();
        HardMasks.keepOne(heads, masks, true);
        HardMasks.keepOne(channels, masks, false);
        CompressoOptions o = r.options();
        ObjectNode opts = new ObjectMapper().valueToTree(o);
        opts.put("finalExpectedSparsity", masks.expectedSparsity());
        PruningPlan plan = HardMasks.plan(md.config(), heads, channels);
        plan = plan.withProvenance("compresso", opts, o.target(), List.of("heads", "channels"), "learned (hard-concrete masks)",
                new PruningPlan.Calibration(r.data().toString(), o.windows(), o.seqLen()), o.seed()).withModelHash(ModelHash.of(r.model()));
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            TensorMap merged = Merge.merged(md.checkpoint(), lora, m);
            TensorMap folded = HardMasks.fold(md.config(), merged, heads, channels, m);
            Surgery.Result result = Surgery.apply(md.config(), folded, plan);
            Surgery.save(result, dir, md.path(), plan);
        }
        return plan;
    }

    /** Makes OUT ready: an existing Compresso OUT is resumed (unless overwrite); returns whether it resumes. */
    static boolean prepare(Request r) throws IOException {
        Path out = r.out();
        OutputGuard.checkNotOverlapping(out, "--out", r.model(), r.data());
        if (!r.overwrite() && OutputGuard.isLopperOutput(out) && Files.isRegularFile(out.resolve(REQUEST_FILE))) {
            return true;
        }
        OutputGuard.checkDirectory(out, r.overwrite(), "--out", r.model(), r.data());
        Path tmp = AtomicDirectory.createTemp(out);
        try {
            OutputGuard.writeMarker(tmp, "compresso");
            AtomicDirectory.replace(tmp, out);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
        return false;
    }

    private static void checkSameInputs(Request r) throws IOException {
        JsonNode saved = new ObjectMapper().readTree(r.out().resolve(REQUEST_FILE).toFile());
        ObjectNode now = requestJson(r);
        for (String f : new String[] {"model", "data"}) {
            if (!saved.path(f).toString().equals(now.path(f).toString())) {
                throw new IllegalArgumentException("--out " + r.out() + ": holds a Compresso run with " + f + " " + saved.path(f)
                        + ", not " + now.path(f) + "; run the same command to resume it, or pass --overwrite to start over");
            }
        }
    }

    private static ObjectNode requestJson(Request r) {
        ObjectMapper json = new ObjectMapper();
        ObjectNode n = json.createObjectNode();
        n.put("model", r.model().toAbsolutePath().toString());
        n.put("data", r.data().toAbsolutePath().toString());
        n.set("options", json.valueToTree(r.options()));
        return n;
    }

    /** step, loss, lagrangian, expected_sparsity, target_sparsity, lambda_1, lambda_2, lr. */
    public static void writeCsv(List<Trainer.Point> history, Path file) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (PrintWriter w = new PrintWriter(Files.newBufferedWriter(tmp))) {
            w.println("step,loss,lagrangian,expected_sparsity,target_sparsity,lambda_1,lambda_2,lr");
            for (Trainer.Point p : history) {
                Map<String, Double> m = p.metrics();
                w.printf(java.util.Locale.ROOT, "%d,%.6f,%.6g,%.6f,%.6f,%.6g,%.6g,%.6g%n", p.step(), p.trainLoss(), m.get("lagrangian"),
                        m.get("expected_sparsity"), m.get("target_sparsity"), m.get("lambda_1"), m.get("lambda_2"), p.lr());
            }
        }
        Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }
}
