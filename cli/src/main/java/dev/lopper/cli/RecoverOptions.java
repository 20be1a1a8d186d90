package dev.lopper.cli;

import dev.lopper.pruning.PruneRequest;
import dev.lopper.training.lora.LoraConfig;
import dev.lopper.training.job.PruneAndRecover;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.Trainer;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintWriter;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * {@code lopper prune ... --recover-steps N}: the recovery options of {@code lopper prune} (the same defaults as
 * {@code lopper recover}: options left out take {@link TrainOptions#defaults} and {@link LoraConfig#defaults});
 * the job itself is {@link PruneAndRecover}'s.
 */
final class RecoverOptions {
    @Option(names = "--recover-steps", paramLabel = "N", description = "after pruning, LoRA recovery for N optimizer steps (as lopper recover); --out then holds the recovered model, OUT.job/ the pruned model, adapter, curve and checkpoints")
    Integer steps;

    @Option(names = "--recover-seed", description = "with --recover-steps: seed of adapter init, windows and dropout (lopper recover's --seed). Default: 42.")
    Long seed;

    /** --merged-dtype, --stream and the distillation options (with --recover-steps): the same as lopper recover's. */
    @picocli.CommandLine.Mixin
    RecoverySettingsOptions settings;

    /** Runs prune + recovery ({@code --recover-steps} given; PruneAndRecover checks the request before any work). */
    PruneAndRecover.Outcome run(PruneRequest prune, TrainingOptions training, PrintWriter err) throws IOException {
        boolean quiet = Boolean.getBoolean("lopper.quiet");
        try (StopOnSignal stop = new StopOnSignal()) {
            return PruneAndRecover.run(request(prune, training), quiet ? Trainer.Listener.NONE : new RecoverCommand.ProgressLine(err), stop::watch);
        }
    }

    PruneAndRecover.Request request(PruneRequest prune, TrainingOptions training) {
        TrainOptions d = TrainOptions.defaults(Math.max(1, steps));
        return new PruneAndRecover.Request(prune, settings.settings(training, seed == null ? d : d.withSeed(seed)));
    }

    /** What the recovery did ({@code PruneCommand} prints the pruning step first, when it ran now). */
    void report(PruneAndRecover.Outcome o, PrintWriter w, boolean json) {
        Trainer.Result t = o.recovery().train();
        Double[] loss = RecoverCommand.valLosses(t.history());
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
            m.put("val_loss_before", loss[0]);
            m.put("val_loss_after", loss[1]);
            m.put("tokens_per_second", t.tokensPerSecond());
            m.put("adapter", o.recovery().adapter() == null ? null : o.recovery().adapter().toString());
            m.put("job", o.job().toString());
            m.put("curve_csv", o.recovery().curve().toString());
            Output.json(w, m);
            return;
        }
        if (o.prune() == null) {
            w.printf("pruned model reused from %s (an earlier run of this command)%n", o.pruned());
        }
        String models = t.interrupted() ? "" : String.format(Locale.ROOT, "  recovered model: %s (%s)%n  pruned model before recovery: %s%n"
                + "  adapter (PEFT): %s%n", o.out(), RecoverCommand.written(o.out(), settings.mergedDtype), o.pruned(),
                o.recovery().adapter() == null ? "none (every weight trained)" : o.recovery().adapter());
        RecoverCommand.print(w, o.recovery(), "recovered", models);
    }
}
