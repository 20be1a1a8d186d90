package dev.lopper.cli;

import dev.lopper.training.job.OutputDtype;
import dev.lopper.model.io.OutputLock;
import dev.lopper.training.job.Recovery;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.Trainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code lopper recover PRUNED --train-data FILE --steps N --out DIR}: LoRA recovery of a pruned model (LLM-Pruner's
 * post-training), resumable; writes the PEFT adapter, the merged model and the loss curve (recovery/'s
 * {@link Recovery}).
 */
@Command(name = "recover", mixinStandardHelpOptions = true,
        description = {"Trains LoRA adapters on MODEL (frozen) with the causal-LM loss and writes the merged model to DIR.",
                "The adapters are folded in (HF layout); --teacher DENSE distils from the dense model instead, --full trains every",
                "weight. DIR.job/ holds the adapter (PEFT), checkpoints and curve.csv/.png; running the same command",
                "again continues from the last checkpoint, and Ctrl-C writes one before exiting.",
                "Defaults follow LLM-Pruner's post-training (see docs/TRAINING.md)."})
public final class RecoverCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL", description = "model directory (a pruned one, or any Lopper model)")
    Path model;

    @Mixin
    OldTrainingSpellings old;


    @Option(names = "--steps", required = true, paramLabel = "N", description = "optimizer steps")
    int steps;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "output directory (an existing recovery DIR is resumed)")
    Path out;

    @Option(names = "--overwrite", description = "start over: replace an existing DIR that Lopper wrote (never anything else)")
    boolean overwrite;

    @Option(names = "--seed", defaultValue = "42", description = "seed of adapter init, data windows and dropout. Default: ${DEFAULT-VALUE} (every Lopper trainer's; lopper prune --recover-steps calls it --recover-seed, as prune's --seed is its calibration seed).")
    long seed;

    /** --merged-dtype, --stream and the distillation options: the same as lopper prune --recover-steps' (one declaration). */
    @Mixin
    RecoverySettingsOptions recovery;

    /** Data, LoRA and optimizer options: the same as lopper prune's (one declaration). */
    @Mixin
    TrainingOptions training;

    @Mixin
    ModelOptions options;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        old.applyTo(training);
        Path data = training.trainData; // given: Validation requires --train-data (or --data)
        if (!Files.exists(data)) {
            throw new IllegalArgumentException("--train-data " + data + ": does not exist (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        Recovery.Request request = request();
        PrintWriter err = spec.commandLine().getErr();
        boolean quiet = Boolean.getBoolean("lopper.quiet");
        Recovery.Outcome r;
        // Ctrl-C (SIGINT/SIGTERM): the trainer checkpoints after the current step, the JVM waits for it
        try (StopOnSignal stop = new StopOnSignal(); OutputLock lock = OutputLock.acquire(out, "--out")) {
            r = Recovery.run(request, quiet ? Trainer.Listener.NONE : new ProgressLine(err), stop::watch);
        }
        report(r);
        return r.train().interrupted() ? 130 : 0;
    }

    /** The options as a request (the defaults of lopper prune --recover-steps are these: RecoverOptions). */
    Recovery.Request request() {
        old.applyTo(training);
        return new Recovery.Request(model, out, options.device(), overwrite, recovery.settings(training, TrainOptions.defaults(steps).withSeed(seed)));
    }

    private void report(Recovery.Outcome r) {
        PrintWriter w = spec.commandLine().getOut();
        Trainer.Result t = r.train();
        Double[] loss = valLosses(t.history());
        if (options.json) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("steps", t.step());
            m.put("resumed_from", t.resumedFrom());
            m.put("interrupted", t.interrupted());
            m.put("stopped_early", t.stoppedEarly());
            m.put("trainable_parameters", r.trainableParameters());
            m.put("loss", recovery.distill.teacher == null ? "causal-lm" : "distillation");
            m.put("val_loss_before", loss[0]);
            m.put("val_loss_after", loss[1]);
            m.put("tokens_per_second", t.tokensPerSecond());
            m.put("merged", r.merged() == null ? null : r.merged().toString());
            m.put("merged_dtype", r.merged() == null ? null : dtypeOf(r.merged()));
            m.put("adapter", r.adapter() == null ? null : r.adapter().toString());
            m.put("job", r.job().toString());
            m.put("curve_csv", r.curve().toString());
            Output.json(w, m);
            return;
        }
        String models = t.interrupted() ? "" : r.adapter() != null
                ? String.format(Locale.ROOT, "  merged model: %s (%s)%n  adapter (PEFT): %s%n", r.merged(), written(r.merged(), recovery.mergedDtype), r.adapter())
                : String.format(Locale.ROOT, "  trained model (every weight): %s (%s)%n", r.merged(), written(r.merged(), recovery.mergedDtype));
        print(w, r, "recovered " + model, models);
    }

    /** The dtype a model directory's weights are stored in (f32, bf16, f16), or "?" when it cannot be read. */
    static String dtypeOf(Path dir) {
        try (dev.lopper.model.ModelDir md = dev.lopper.model.ModelDir.open(dir)) {
            return OutputDtype.name(OutputDtype.of(md));
        } catch (Exception | Error e) {
            return "?";
        }
    }

    /** "bf16, the input's dtype; --merged-dtype f32|bf16|f16 to change" or "f32, --merged-dtype". */
    static String written(Path dir, String asked) {
        boolean keep = asked == null || asked.equalsIgnoreCase("keep");
        return dtypeOf(dir) + (keep ? ", the input's dtype; --merged-dtype f32|bf16|f16 to change" : ", --merged-dtype");
    }

    /** The first and the last validation loss of a run's history (nulls when it validated nothing). */
    static Double[] valLosses(java.util.List<Trainer.Point> history) {
        Double[] firstLast = new Double[2];
        for (Trainer.Point p : history) {
            if (p.valLoss() != null) {
                firstLast[0] = firstLast[0] == null ? p.valLoss() : firstLast[0];
                firstLast[1] = p.valLoss();
            }
        }
        return firstLast;
    }

    /**
     * What recover and prune --recover-steps print: "interrupted ..." or {@code summary} (with how the run went) and
     * {@code models}, then the validation loss and where the curve and checkpoints are.
     */
    static void print(PrintWriter w, Recovery.Outcome r, String summary, String models) {
        Trainer.Result t = r.train();
        Path job = r.job();
        if (t.interrupted()) {
            w.printf(Locale.ROOT, "interrupted at step %d; checkpoint saved in %s; run the same command to continue%n", t.step(),
                    job.resolve("checkpoints"));
        } else {
            w.printf(Locale.ROOT, "%s: %d steps%s%s, %d trainable parameters, %.0f tokens/s%n%s", summary, t.step(),
                    t.resumedFrom() > 0 ? " (resumed from step " + t.resumedFrom() + ")" : "", t.stoppedEarly() ? " (stopped early)" : "",
                    r.trainableParameters(), t.tokensPerSecond(), models);
        }
        Double[] loss = valLosses(t.history());
        if (loss[0] != null) {
            w.printf(Locale.ROOT, "  validation loss: %.4f -> %.4f (perplexity %.3f -> %.3f)%n", loss[0], loss[1], Math.exp(loss[0]),
                    Math.exp(loss[1]));
        }
        w.printf(Locale.ROOT, "  curve: %s (and .png); checkpoints in %s%n", r.curve(), job.resolve("checkpoints"));
        w.flush();
    }

    /**
     * One line per step on stderr (step, loss, learning rate, tokens/s, ETA) and each validation loss; recovery trains
     * without a method, so nothing is cut during it.
     */
    static final class ProgressLine implements Trainer.Listener {
        private final PrintWriter err;

        ProgressLine(PrintWriter err) {
            this.err = err;
        }

        @Override
        public void step(Trainer.Point p, int total, double tokensPerSecond, double eta) {
            err.printf(Locale.ROOT, "step %d/%d  loss %.4f  lr %.3g  %.0f tok/s  ETA %s%n", p.step(), total, p.trainLoss(), p.lr(),
                    tokensPerSecond, time(eta));
            err.flush();
        }

        @Override
        public void within(int step, int micro, int accumulation, double tokensPerSecond, double eta) {
            err.printf(Locale.ROOT, "step %d  micro-batch %d/%d  %.0f tok/s  ETA %s%n", step, micro, accumulation, tokensPerSecond, time(eta));
            err.flush();
        }

        @Override
        public void validated(int step, double loss) {
            err.printf(Locale.ROOT, "step %d  val_loss %.4f  (perplexity %.3f)%n", step, loss, Math.exp(loss));
            err.flush();
        }

        @Override
        public void message(String line) {
            err.println(line);
            err.flush();
        }

        @Override
        public void resumed(int step, Path dir) {
            err.printf(Locale.ROOT, "resuming from %s (step %d)%n", dir, step);
            err.flush();
        }

        private static String time(double s) {
            long t = Math.round(s);
            return t >= 3600 ? String.format(Locale.ROOT, "%dh%02dm", t / 3600, t / 60 % 60) : String.format(Locale.ROOT, "%dm%02ds", t / 60, t % 60);
        }
    }
}
