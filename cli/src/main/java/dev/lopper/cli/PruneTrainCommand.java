package dev.lopper.cli;

import dev.lopper.model.io.OutputLock;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.job.PruneWhileTraining;
import dev.lopper.training.loop.TrainOptions;
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
 * {@code lopper prune-train MODEL --method efficientllm|bip --ratio R --train-data FILE --steps N --out DIR}: prunes
 * while training every weight (recovery/'s {@link PruneWhileTraining}); resumable; parses, prints, nothing more.
 */
@Command(name = "prune-train", mixinStandardHelpOptions = true,
        description = {"Prunes MODEL while training all of its weights (AdamW, in memory): efficientllm (Taylor saliency",
                "accumulated during training, structures removed progressively) or bip (bi-level mask and weights).",
                "Writes DIR/pruned (a plain HF model with lopper_plan.json), DIR/loss.csv|png, DIR/size.csv|png.",
                "Checkpoints go to DIR/checkpoints; the same command continues from the last one; Ctrl-C checkpoints.",
                "Memory: 16 bytes a parameter (weights, gradients, two AdamW moments, fp32) plus activations."})
public final class PruneTrainCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL", description = "model directory")
    Path model;

    @Option(names = "--method", required = true, description = "efficientllm or bip")
    String method;

    @Option(names = "--ratio", required = true, description = "fraction of prunable (attention + MLP) parameters to remove, in [0, 1)")
    double ratio;

    @Option(names = {"--train-data", "--data"}, required = true, paramLabel = "FILE", description = "training text: .txt, .jsonl (field \"text\") or a directory")
    Path data;

    @Option(names = "--val", paramLabel = "FILE", description = "validation text; default: the last --val-fraction of --train-data, held out")
    Path val;

    @Option(names = "--val-fraction", defaultValue = "0.05", description = "share of --train-data held out without --val. Default: ${DEFAULT-VALUE}.")
    double valFraction;

    @Option(names = "--val-windows", defaultValue = "16", description = "validation windows of --seq-len tokens. Default: ${DEFAULT-VALUE}.")
    int valWindows;

    @Option(names = "--steps", required = true, paramLabel = "N", description = "optimizer steps")
    int steps;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "output directory (an existing run there is resumed)")
    Path out;

    @Option(names = "--overwrite", description = "start over: replace an existing DIR that Lopper wrote (never anything else)")
    boolean overwrite;

    @Option(names = "--seed", defaultValue = "42", description = "seed of the data windows. Default: ${DEFAULT-VALUE}.")
    long seed;

    @Mixin
    TrainingOptions training;

    @Mixin
    ModelOptions options;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        TrainOptions o = training.of(steps, 0, seed);
        if (!Files.exists(data)) {
            throw new IllegalArgumentException("--train-data " + data + ": does not exist (expected a .txt file, a .jsonl file or a directory of text files)");
        }
        PruneWhileTraining.Request request = new PruneWhileTraining.Request(model, method, ratio, data, val, valFraction, valWindows, out, o,
                options.device(), overwrite, null);
        PrintWriter err = spec.commandLine().getErr();
        boolean quiet = Boolean.getBoolean("lopper.quiet");
        long bytes = PruneWhileTraining.trainingBytes(model);
        if (!quiet) {
            err.printf(Locale.ROOT, "full training holds %d parameters: %s (weights, gradients, 2 AdamW moments, fp32) plus activations%n",
                    bytes / 16, PruneWhileTraining.mib(bytes));
            err.flush();
        }
        PruneWhileTraining.Outcome r;
        try (StopOnSignal stop = new StopOnSignal(); OutputLock lock = OutputLock.acquire(out, "--out")) {
            r = PruneWhileTraining.run(request, quiet ? Trainer.Listener.NONE : new RecoverCommand.ProgressLine(err), stop::watch);
        }
        report(r);
        return r.train().interrupted() ? 130 : 0;
    }

    private void report(PruneWhileTraining.Outcome r) {
        PrintWriter w = spec.commandLine().getOut();
        Trainer.Result t = r.train();
        Double first = t.history().stream().map(Trainer.Point::valLoss).filter(v -> v != null).findFirst().orElse(null);
        Double last = null;
        for (Trainer.Point p : t.history()) {
            last = p.valLoss() != null ? p.valLoss() : last;
        }
        if (options.json) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("method", method);
            m.put("steps", t.step());
            m.put("resumed_from", t.resumedFrom());
            m.put("interrupted", t.interrupted());
            m.put("params_before", r.paramsBefore());
            m.put("params_after", r.paramsAfter());
            m.put("achieved_ratio", r.plan() == null ? null : r.plan().result().achievedRatio());
            m.put("training_bytes", r.trainingBytes());
            m.put("val_loss_before", first);
            m.put("val_loss_after", last);
            m.put("tokens_per_second", t.tokensPerSecond());
            m.put("pruned", r.pruned() == null ? null : r.pruned().toString());
            m.put("loss_csv", r.lossCsv().toString());
            m.put("size_csv", r.sizeCsv().toString());
            Output.json(w, m);
            return;
        }
        if (t.interrupted()) {
            w.printf(Locale.ROOT, "interrupted at step %d; checkpoint saved in %s; run the same command to continue%n", t.step(), out.resolve("checkpoints"));
        } else {
            w.printf(Locale.ROOT, "%s %s: %d steps%s, %s -> %s parameters (%.1f%% of prunable removed), %.0f tokens/s%n", method, model, t.step(),
                    t.resumedFrom() > 0 ? " (resumed from step " + t.resumedFrom() + ")" : "", String.valueOf(r.paramsBefore()),
                    String.valueOf(r.paramsAfter()), 100 * r.plan().result().achievedRatio(), t.tokensPerSecond());
            w.printf(Locale.ROOT, "  pruned model: %s%n", r.pruned());
        }
        if (first != null && last != null) {
            w.printf(Locale.ROOT, "  validation loss: %.4f -> %.4f (perplexity %.3f -> %.3f)%n", first, last, Math.exp(first), Math.exp(last));
        }
        w.printf(Locale.ROOT, "  curves: %s, %s (and .png)%n", r.lossCsv(), r.sizeCsv());
        w.flush();
    }
}
