package dev.lopper.cli;

import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.PruneResult;
import dev.lopper.recovery.LoraConfig;
import dev.lopper.recovery.PruneAndRecover;
import dev.lopper.recovery.TrainOptions;
import dev.lopper.recovery.Trainer;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.lang.reflect.Field;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * {@code lopper prune ... --recover-steps N}: the recovery options of {@code lopper prune} (the same defaults as
 * {@code lopper recover}: options left out take {@link TrainOptions#defaults} and {@link LoraConfig#defaults});
 * the job itself is {@link PruneAndRecover}'s.
 */
final class RecoverOptions {
    @Option(names = "--recover-steps", paramLabel = "N", description = "after pruning, LoRA recovery for N optimizer steps (as lopper recover); --out then holds the recovered model, OUT.recovery/ the pruned model, adapter, loss curve and checkpoints")
    Integer steps;

    @Option(names = "--train-data", paramLabel = "FILE", description = "with --recover-steps: training text (.txt, .jsonl or a directory). Default: the --calib text.")
    Path trainData;

    @Option(names = "--val-data", paramLabel = "FILE", description = "with --recover-steps: validation text (lopper recover's --val). Default: the last --val-fraction of the training text.")
    Path val;

    @Option(names = "--val-fraction", description = "with --recover-steps: share of the training text held out without --val-data. Default: 0.05.")
    Double valFraction;

    @Option(names = "--val-windows", description = "with --recover-steps: validation windows. Default: 16.")
    Integer valWindows;

    @Option(names = "--lora-rank", description = "with --recover-steps: LoRA rank. Default: 8.")
    Integer rank;

    @Option(names = "--lora-alpha", description = "with --recover-steps: LoRA alpha. Default: 16.")
    Double alpha;

    @Option(names = "--lora-dropout", description = "with --recover-steps: dropout on the adapters' input. Default: 0.05.")
    Double dropout;

    @Option(names = "--lora-targets", split = ",", paramLabel = "PROJ", description = "with --recover-steps: projections to adapt. Default: all seven.")
    List<String> targets;

    @Option(names = "--lr", description = "with --recover-steps: peak learning rate (AdamW). Default: 3e-4.")
    Double lr;

    @Option(names = "--weight-decay", description = "with --recover-steps: AdamW weight decay. Default: 0.")
    Double weightDecay;

    @Option(names = "--warmup", description = "with --recover-steps: warm-up steps. Default: 10% of the steps.")
    Integer warmup;

    @Option(names = "--max-grad-norm", description = "with --recover-steps: gradient clipping norm (0: off). Default: 1.0.")
    Double maxGradNorm;

    @Option(names = "--micro-batch", description = "with --recover-steps: windows per forward/backward. Default: 4.")
    Integer microBatch;

    @Option(names = "--accumulation", description = "with --recover-steps: micro-batches per step. Default: 4.")
    Integer accumulation;

    @Option(names = "--train-seq-len", description = "with --recover-steps: tokens per training window (lopper recover's --seq-len). Default: 256.")
    Integer seqLen;

    @Option(names = "--eval-every", description = "with --recover-steps: validation every N steps. Default: 10% of the steps.")
    Integer evalEvery;

    @Option(names = "--checkpoint-every", description = "with --recover-steps: checkpoint every N steps. Default: 10% of the steps.")
    Integer checkpointEvery;

    @Option(names = "--patience", description = "with --recover-steps: early stop after N validations without improvement (0: off). Default: 0.")
    Integer patience;

    @Option(names = "--recover-seed", description = "with --recover-steps: seed of adapter init, windows and dropout (lopper recover's --seed). Default: 42.")
    Long seed;

    @Option(names = "--merged-dtype", description = "with --recover-steps: dtype of the recovered model: f32, bf16, f16 or keep. Default: f32.")
    String mergedDtype;

    @Option(names = "--stream", description = "with --recover-steps: train with one decoder layer's weights in memory at a time")
    boolean stream;

    /** Prints what the pruning step did (null when an earlier run's pruned model was reused). */
    interface PrunePrinter {
        void print(PruneResult result) throws Exception;
    }

    /**
     * Runs prune + recovery when {@code --recover-steps} was given and returns the exit code; returns null (and
     * does nothing) otherwise, after refusing recovery options given without it.
     */
    Integer runIfRequested(PruneRequest prune, PrintWriter out, PrintWriter err, boolean json, PrunePrinter printer) throws Exception {
        if (steps == null) {
            String unused = firstGiven();
            if (unused != null) {
                throw new IllegalArgumentException(unused + ": only with --recover-steps N (recovery after pruning)");
            }
            return null;
        }
        PruneAndRecover.Request r = request(prune);
        PruneAndRecover.check(r); // before any work
        boolean quiet = Boolean.getBoolean("lopper.quiet");
        PruneAndRecover.Outcome o;
        try (StopOnSignal stop = new StopOnSignal()) {
            o = PruneAndRecover.run(r, quiet ? Trainer.Listener.NONE : new RecoverCommand.ProgressLine(err), stop::watch);
        }
        if (o.prune() != null && !json) {
            printer.print(o.prune());
        }
        report(o, out, json);
        return o.recovery().train().interrupted() ? 130 : 0;
    }

    PruneAndRecover.Request request(PruneRequest prune) {
        TrainOptions d = TrainOptions.defaults(Math.max(1, steps));
        TrainOptions o = new TrainOptions(steps, or(microBatch, d.microBatch()), or(accumulation, d.accumulation()), or(seqLen, d.seqLen()),
                or(lr, d.learningRate()), or(weightDecay, d.weightDecay()), or(warmup, d.warmup()), or(maxGradNorm, d.maxGradNorm()),
                or(evalEvery, d.evalEvery()), or(checkpointEvery, d.checkpointEvery()), or(patience, d.patience()), or(seed, d.seed()));
        LoraConfig l = LoraConfig.defaults();
        LoraConfig lora = new LoraConfig(or(rank, l.rank()), or(alpha, l.alpha()), or(dropout, l.dropout()),
                targets == null ? l.targets() : new LinkedHashSet<>(targets));
        return new PruneAndRecover.Request(prune, trainData, val, lora, o, or(valFraction, 0.05), or(valWindows, 16),
                RecoverCommand.dtype(mergedDtype == null ? "f32" : mergedDtype), stream);
    }

    private static <T> T or(T v, T d) {
        return v != null ? v : d;
    }

    /** The first recovery option given (its first name), or null. */
    private String firstGiven() throws IllegalAccessException {
        for (Field f : RecoverOptions.class.getDeclaredFields()) {
            Option opt = f.getAnnotation(Option.class);
            Object v = f.get(this);
            if (opt != null && v != null && !Boolean.FALSE.equals(v)) {
                return opt.names()[0];
            }
        }
        return null;
    }

    private static void report(PruneAndRecover.Outcome o, PrintWriter w, boolean json) {
        Trainer.Result t = o.recovery().train();
        Double first = null;
        Double last = null;
        for (Trainer.Point p : t.history()) {
            if (p.valLoss() != null) {
                first = first == null ? p.valLoss() : first;
                last = p.valLoss();
            }
        }
        if (json) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("out", o.out() == null ? null : o.out().toString());
            m.put("pruned", o.pruned().toString());
            m.put("pruned_now", o.prune() != null);
            if (o.prune() != null) {
                m.put("params_after", o.prune().plan().result().paramsAfter());
                m.put("achieved_ratio", o.prune().plan().result().achievedRatio());
            }
            m.put("steps", t.step());
            m.put("resumed_from", t.resumedFrom());
            m.put("interrupted", t.interrupted());
            m.put("trainable_parameters", o.recovery().trainableParameters());
            m.put("val_loss_before", first);
            m.put("val_loss_after", last);
            m.put("tokens_per_second", t.tokensPerSecond());
            m.put("adapter", o.recovery().adapter() == null ? null : o.recovery().adapter().toString());
            m.put("loss_csv", o.recovery().csv().toString());
            Output.json(w, m);
            return;
        }
        if (o.prune() == null) {
            w.printf("pruned model reused from %s (an earlier run of this command)%n", o.pruned());
        }
        if (t.interrupted()) {
            w.printf(Locale.ROOT, "interrupted at step %d; checkpoint saved in %s; run the same command to continue%n", t.step(),
                    o.work().resolve("recover/checkpoints"));
        } else {
            w.printf(Locale.ROOT, "recovered: %d steps%s%s, %d trainable parameters, %.0f tokens/s%n", t.step(),
                    t.resumedFrom() > 0 ? " (resumed from step " + t.resumedFrom() + ")" : "", t.stoppedEarly() ? " (stopped early)" : "",
                    o.recovery().trainableParameters(), t.tokensPerSecond());
            w.printf(Locale.ROOT, "  recovered model: %s%n  pruned model before recovery: %s%n  adapter (PEFT): %s%n", o.out(), o.pruned(),
                    o.recovery().adapter());
        }
        if (first != null && last != null) {
            w.printf(Locale.ROOT, "  validation loss: %.4f -> %.4f (perplexity %.3f -> %.3f)%n", first, last, Math.exp(first), Math.exp(last));
        }
        w.printf(Locale.ROOT, "  loss curve: %s%n", o.recovery().csv());
        w.flush();
    }
}
