package dev.lopper.cli;

import dev.lopper.training.method.Bip;
import dev.lopper.training.method.EfficientLlm;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code lopper prune-train MODEL --method efficientllm|bip ...}: deprecated for one release. It prints the
 * equivalent {@code lopper prune} command on stderr (one line) and runs exactly that command, so its results and
 * output layout are {@code lopper prune}'s (the model in --out, its job folder OUT.job/).
 * The options keep their names, each translated to prune's ({@link #pruneArgs}).
 */
@Command(name = "prune-train", mixinStandardHelpOptions = true,
        description = {"Deprecated, goes in the next release: use lopper prune MODEL --method efficientllm|bip.",
                "Prints the equivalent lopper prune command on stderr and runs it: EfficientLLM or BiP prune MODEL",
                "while training all of its weights. The model goes to --out, checkpoints and the curve to OUT.job/;",
                "the same command resumes."})
public final class PruneTrainCommand implements Callable<Integer> {
    /** The methods this alias ran: those that prune while training every weight. */
    static final List<String> FULL_TRAINING = List.of(EfficientLlm.NAME, Bip.NAME);

    /** prune-train's options whose lopper prune name differs (the hidden old spellings included). */
    static final Map<String, String> RENAMED = Map.of("--data", "--train-data", "--val", "--val-data", "--seq-len", "--train-seq-len");

    @Parameters(index = "0", paramLabel = "MODEL", description = "model directory")
    Path model;

    @Option(names = "--method", required = true, description = "efficientllm or bip")
    String method;

    @Option(names = "--ratio", required = true, description = "fraction of prunable (attention + MLP) parameters to remove, in [0, 1)")
    double ratio;

    @Mixin
    OldTrainingSpellings old;


    @Option(names = "--steps", required = true, paramLabel = "N", description = "optimizer steps")
    int steps;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "the pruned model (its work in OUT.job/; an existing run there is resumed)")
    Path out;

    @Option(names = "--overwrite", description = "start over: replace an existing DIR that Lopper wrote (never anything else)")
    boolean overwrite;

    /** Passed on as prune's --seed (which seeds the training windows of the schedule engine's methods). */
    @Option(names = "--seed", defaultValue = "42", description = "seed of the data windows. Default: ${DEFAULT-VALUE} (every Lopper trainer's; passed on as lopper prune --seed 42, whose own default is 0).")
    long seed;

    @Mixin
    TrainingOptions training;

    @Mixin
    ModelOptions options;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        old.applyTo(training);
        if (!FULL_TRAINING.contains(method)) {
            throw new IllegalArgumentException("--method " + method + ": expected one of " + FULL_TRAINING
                    + " (other methods: lopper prune --method NAME)");
        }
        if (training.trainData == null) {
            throw new IllegalArgumentException("--method " + method + " trains the whole model: give --train-data FILE");
        }
        List<String> args = pruneArgs();
        PrintWriter err = spec.commandLine().getErr();
        err.println("warning: lopper prune-train is deprecated and goes in the next release; running the same as: lopper "
                + String.join(" ", quoted(args)));
        err.flush();
        return prune().execute(args.subList(1, args.size()).toArray(String[]::new));
    }

    /**
     * The {@code lopper prune} arguments of this command line: every option given, under prune's name
     * ({@link #RENAMED}); and the default that differs between the commands made explicit: the seed (42 here, 0 in
     * prune).
     */
    List<String> pruneArgs() {
        ParseResult parsed = spec.commandLine().getParseResult();
        List<String> a = new ArrayList<>(List.of("prune", model.toString()));
        for (OptionSpec o : parsed.matchedOptions()) {
            String name = o.longestName();
            a.add(RENAMED.getOrDefault(name, name));
            if (o.arity().max() > 0) {
                a.addAll(o.originalStringValues());
            }
        }
        if (!parsed.hasMatchedOption("--seed")) {
            a.addAll(List.of("--seed", Long.toString(seed)));
        }
        return a;
    }

    /** lopper prune as the enclosing command line has it (its writers and error handling), or a fresh one. */
    private CommandLine prune() {
        CommandLine root = spec.root().commandLine();
        CommandLine prune = root.getSubcommands().get("prune");
        if (prune == null) {
            prune = Main.commandLine().getSubcommands().get("prune");
            prune.setOut(spec.commandLine().getOut());
            prune.setErr(spec.commandLine().getErr());
        }
        return prune;
    }

    private static List<String> quoted(List<String> args) {
        List<String> q = new ArrayList<>();
        for (String s : args) {
            q.add(s.isEmpty() || s.matches(".*[^A-Za-z0-9_./:=,+-].*") ? "'" + s.replace("'", "'\\''") + "'" : s);
        }
        return q;
    }
}
