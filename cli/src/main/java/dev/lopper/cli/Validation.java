package dev.lopper.cli;

import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.training.job.ScheduleMethods;
import picocli.CommandLine;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParseResult;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Predicate;

/**
 * The one place where option values are checked before any command starts work: every option a command line gives
 * is range-checked here (by its name, alike in every command), and every usage error, picocli's own (not a number,
 * missing, unknown) or a range check's, ends in one line naming the option, the value given and what is expected,
 * with {@code see lopper COMMAND --help} and exit code 2. Bad files and bad content are the commands' own checks
 * (exit code 1).
 */
final class Validation {
    private Validation() {
    }

    /** A usage error of this class: its message is already the one line (without "error: " and the help pointer). */
    static final class UsageError extends ParameterException {
        UsageError(CommandLine cl, String message) {
            super(cl, message);
        }
    }

    private record Rule(Predicate<Double> ok, String expected) {
    }

    private static final Map<String, Rule> RULES = rules();

    private static Map<String, Rule> rules() {
        Map<String, Rule> m = new java.util.HashMap<>();
        Rule atLeast1 = new Rule(v -> v >= 1 && v == Math.rint(v), "a whole number of at least 1");
        Rule atLeast0 = new Rule(v -> v >= 0 && v == Math.rint(v), "a whole number of at least 0");
        Rule atLeast2 = new Rule(v -> v >= 2 && v == Math.rint(v), "a whole number of at least 2 (tokens)");
        Rule ratio = new Rule(v -> v >= 0 && v < 1, "a fraction in [0, 1)");
        Rule open = new Rule(v -> v > 0 && v < 1, "a fraction in (0, 1)");
        Rule positive = new Rule(v -> v > 0 && Double.isFinite(v), "a number above 0");
        Rule nonNegative = new Rule(v -> v >= 0 && Double.isFinite(v), "a number of at least 0");
        for (String o : List.of("--iterative", "--iterative-steps", "--steps", "--recover-steps", "--samples", "--stride",
                "--chunk-tokens", "--threads", "--batch", "--micro-batch", "--accumulation", "--lora-rank",
                "--max-tokens", "--prune-freq", "--eval-every", "--checkpoint-every")) {
            m.put(o, atLeast1);
        }
        // --val-windows 0: no validation (the memory benchmarks train without it)
        for (String o : List.of("--limit", "--keep-first", "--keep-last", "--train-steps-per-step", "--patience", "--warmup",
                "--val-windows")) {
            m.put(o, atLeast0);
        }
        for (String o : List.of("--seq-len", "--window", "--train-seq-len")) {
            m.put(o, atLeast2);
        }
        for (String o : List.of("--ratio", "--ratios", "--head-ratio", "--channel-ratio", "--lora-dropout")) {
            m.put(o, ratio);
        }
        for (String o : List.of("--val-fraction", "--step-ratio")) {
            m.put(o, open);
        }
        for (String o : List.of("--lr", "--lora-alpha", "--reg-lr")) {
            m.put(o, positive);
        }
        for (String o : List.of("--weight-decay", "--max-grad-norm")) {
            m.put(o, nonNegative);
        }
        return m;
    }

    /** Checks the options of the command (and its parents) that will run; throws a {@link UsageError}. */
    static void check(ParseResult top) {
        for (ParseResult p = top; p != null; p = p.subcommand()) {
            if (p.isUsageHelpRequested() || p.isVersionHelpRequested()) {
                return;
            }
        }
        for (ParseResult p = top; p != null; p = p.subcommand()) {
            CommandLine cl = p.commandSpec().commandLine();
            for (OptionSpec o : p.matchedOptions()) {
                checkOption(cl, o);
            }
            checkCommand(cl, p);
        }
    }

    private static void checkOption(CommandLine cl, OptionSpec o) {
        String name = o.longestName();
        Object value = o.getValue();
        if (name.equals("--device") && value instanceof String d
                && !d.trim().toLowerCase(Locale.ROOT).matches("cpu|gpu|cuda|gpu:\\d+|cuda:\\d+")) {
            throw new UsageError(cl, "--device " + d + ": expected cpu, gpu or gpu:N");
        }
        Rule rule = RULES.get(name);
        if (rule == null) {
            // hidden old spellings (method options) carry no value; their new names are checked when given
            if (name.equals("--window") || name.equals("--seq-len")) {
                rule = RULES.get("--seq-len");
            } else {
                return;
            }
        }
        List<String> given = o.stringValues();
        Collection<?> values = value instanceof Collection<?> c ? c : value == null ? parsed(given) : List.of(value);
        int i = 0;
        for (Object v : values) {
            if (v instanceof Number n && !rule.ok().test(n.doubleValue())) {
                String shown = i < given.size() && !(values.size() > 1 && given.size() == 1) ? given.get(i) : stripZero(n);
                throw new UsageError(cl, name + " " + shown + ": expected " + rule.expected());
            }
            if (v instanceof Number n && rule.expected().contains("tokens") && n.doubleValue() > dev.lopper.model.Masks.MAX_TOKENS) {
                throw new UsageError(cl, name + " " + stripZero(n) + ": expected at most " + dev.lopper.model.Masks.MAX_TOKENS
                        + " tokens (the longest window whose attention mask fits in memory)");
            }
            i++;
        }
    }

    private static List<Double> parsed(List<String> given) {
        try {
            return given.stream().map(Double::parseDouble).toList();
        } catch (NumberFormatException e) {
            return List.of();
        }
    }

    private static String stripZero(Number n) {
        double d = n.doubleValue();
        return d == Math.rint(d) && Math.abs(d) < 1e15 ? Long.toString((long) d) : Double.toString(d);
    }

    /** Runs a check that throws an {@link IllegalArgumentException} with the one line, turned into a usage error. */
    private static void usage(CommandLine cl, Runnable c) {
        try {
            c.run();
        } catch (IllegalArgumentException e) {
            throw new UsageError(cl, e.getMessage());
        }
    }

    /** The options whose values are names from a list: each checked against its registry, alike in every command. */
    private static void checkChoices(CommandLine cl, ParseResult p) {
        if (p.hasMatchedOption("--allocation")) {
            usage(cl, () -> dev.lopper.pruning.allocation.Allocation.strategy(p.matchedOptionValue("--allocation", "")));
        }
        if (p.hasMatchedOption("--ppl-preset")) {
            usage(cl, () -> dev.lopper.eval.PerplexityPreset.parse(p.matchedOptionValue("--ppl-preset", "")));
        }
        for (String o : List.of("--output-dtype", "--merged-dtype")) {
            if (p.hasMatchedOption(o)) {
                usage(cl, () -> dev.lopper.training.job.OutputDtype.parse(p.matchedOptionValue(o, ""), o));
            }
        }
        if (p.hasMatchedOption("--head-unit")) {
            String u = p.matchedOptionValue("--head-unit", "");
            if (!u.trim().toLowerCase(Locale.ROOT).matches("kv-groups?|groups?|query-heads?|heads?")) {
                throw new UsageError(cl, "--head-unit " + u + ": expected kv-group or query-head");
            }
        }
        if (p.hasMatchedOption("--targets")) {
            for (String t : p.matchedOptionValue("--targets", List.<String>of())) {
                if (!dev.lopper.pruning.plan.PruningPlan.TARGETS.contains(t)) {
                    throw new UsageError(cl, "--targets " + t + ": expected " + String.join(", ", dev.lopper.pruning.plan.PruningPlan.TARGETS)
                            + " (comma-separated)");
                }
            }
        }
        for (String t : p.hasMatchedOption("--task") ? p.matchedOptionValue("--task", List.<String>of()) : List.<String>of()) {
            // kjv-cloze without a file reads the fixture's test split, relative to the repository root
            Path file = Path.of(t.contains("=") ? t.substring(t.indexOf('=') + 1) : t.equals("kjv-cloze") ? "fixtures/text/kjv-test.txt" : "");
            if (!file.toString().isEmpty() && !Files.exists(file)) {
                throw new UsageError(cl, "--task " + t + ": " + file + " does not exist" + (t.equals("kjv-cloze")
                        ? " here (kjv-cloze reads the fixture's test split from the repository root); run from there or give kjv-cloze=FILE"
                        : "; expected a task file"));
            }
        }
        if (p.commandSpec().name().equals("export")) {
            String f = p.matchedOptionValue("--format", "");
            if (!Set.of("onnx", "onnx-kv", "torchscript", "hf", "gguf").contains(f)) {
                throw new UsageError(cl, "--format " + f + ": expected onnx, onnx-kv, torchscript, hf or gguf");
            }
            String d = p.matchedOptionValue("--dtype", "f32");
            if (!Set.of("f32", "f16", "bf16", "q8_0").contains(d)) {
                throw new UsageError(cl, "--dtype " + d + ": expected f32, f16, bf16 (onnx, onnx-kv, gguf) or q8_0 (gguf)");
            }
        }
    }

    /** Checks that take more than one option, or the model: still before any work. */
    private static void checkCommand(CommandLine cl, ParseResult p) {
        checkChoices(cl, p);
        String name = p.commandSpec().name();
        switch (name) {
            case "prune" -> checkPrune(cl, p);
            case "sweep" -> checkSweep(cl, p);
            case "recover" -> {
                if (!p.hasMatchedOption("--train-data") && !p.hasMatchedOption("--data")) {
                    throw new UsageError(cl, "--train-data FILE: missing, it is required (the text to train on)");
                }
            }
            default -> {
            }
        }
    }

    private static void checkPrune(CommandLine cl, ParseResult p) {
        String method = p.matchedOptionValue("--method", "magnitude");
        if (p.hasMatchedOption("--method") && !PruneCommand.MethodNames.all().contains(method)) {
            throw new UsageError(cl, "--method " + method + ": expected one of " + String.join(", ", PruneCommand.MethodNames.all()));
        }
        Set<String> keys = new java.util.HashSet<>();
        MethodOptions.KEYS.forEach((option, key) -> {
            if (p.hasMatchedOption(option)) {
                keys.add(key);
            }
        });
        usage(cl, () -> MethodOptions.check(method, keys));
        if (Criteria.names().contains(method)) {
            // the criterion's own factory checks its options' values (--norm l3, --flap-metric foo, --taylor x, ...)
            Map<String, String> given = new java.util.LinkedHashMap<>();
            MethodOptions.KEYS.forEach((option, key) -> {
                if (p.hasMatchedOption(option)) {
                    Object v = p.matchedOption(option).getValue();
                    given.put(key, String.valueOf(v));
                }
            });
            usage(cl, () -> Criteria.create(method, given));
        }
        if (ScheduleMethods.isMethod(method) && !method.equals("adapt-pruner") && !p.hasMatchedOption("--steps")
                && !p.hasMatchedOption("--apply-plan")) {
            throw new UsageError(cl, "--steps N: missing; --method " + method + " trains while it prunes: give its optimizer steps");
        }
        boolean trainsSchedule = ScheduleMethods.isMethod(method)
                || (p.matchedOptionValue("--train-steps-per-step", 0) > 0 && p.hasMatchedOption("--iterative"));
        if (trainsSchedule && !p.hasMatchedOption("--train-data") && !p.hasMatchedOption("--apply-plan")) {
            throw new UsageError(cl, (ScheduleMethods.isMethod(method) ? "--method " + method + " trains while it prunes"
                    : "--iterative with --train-steps-per-step trains between prune steps") + ": --train-data FILE is required");
        }
        if (!p.hasMatchedOption("--ratio") && !p.hasMatchedOption("--apply-plan")) {
            throw new UsageError(cl, "--ratio R: missing; expected the fraction of prunable parameters to remove, in [0, 1), or --apply-plan FILE");
        }
        Integer seqLen = p.matchedOptionValue("--seq-len", (Integer) null);
        ModelConfig config = config(p); // opened once: the context length and the layer count below
        int context = config == null ? 0 : config.maxPositionEmbeddings();
        if (seqLen != null && context > 0 && seqLen > context) {
            throw new UsageError(cl, "--seq-len " + seqLen + ": expected at most the model's context length (max_position_embeddings "
                    + context + ") tokens per calibration window");
        }
        boolean scheduled = ScheduleMethods.isMethod(method) || p.matchedOptionValue("--iterative", 1) > 1
                || p.matchedOptionValue("--iterative-steps", 1) > 1;
        boolean trainingMethod = ScheduleMethods.isMethod(method);
        if (p.hasMatchedOption("--steps") && !trainingMethod) {
            throw new UsageError(cl, "--steps: only with a training-aware --method (" + String.join(", ", new TreeSet<>(ScheduleMethods.names()))
                    + "); " + (scheduled ? "--iterative trains --train-steps-per-step N between its prune steps" : "after a one-shot prune, --recover-steps N trains"));
        }
        if (p.hasMatchedOption("--train-steps-per-step") && !(method.equals("adapt-pruner") || (!trainingMethod && p.matchedOptionValue("--iterative", 1) > 1))) {
            throw new UsageError(cl, "--train-steps-per-step: only with --iterative N (N > 1) or --method adapt-pruner; "
                    + (trainingMethod ? "--method " + method + " trains --steps N" : "a one-shot prune trains nothing"));
        }
        if (scheduled) {
            for (String o : List.of("--recover-seed", "--merged-dtype", "--stream")) {
                if (p.hasMatchedOption(o)) {
                    throw new UsageError(cl, o + ": only with --recover-steps N (recovery after a one-shot prune); "
                            + (o.equals("--merged-dtype") ? "--output-dtype sets the dtype of " : "not used by ")
                            + (ScheduleMethods.isMethod(method) ? "--method " + method : "--iterative"));
                }
            }
        } else if (p.hasMatchedOption("--output-dtype")) {
            throw new UsageError(cl, "--output-dtype: only with a training-aware --method or --iterative N; "
                    + (p.hasMatchedOption("--recover-steps") ? "--merged-dtype sets the recovered model's" : "a one-shot prune keeps the input's dtype"));
        }
        Integer keepFirst = p.matchedOptionValue("--keep-first", (Integer) null);
        Integer keepLast = p.matchedOptionValue("--keep-last", (Integer) null);
        if (keepFirst != null || keepLast != null) {
            int layers = config == null ? 0 : config.numLayers();
            int first = keepFirst == null ? 0 : keepFirst;
            int last = keepLast == null ? 0 : keepLast;
            if (layers > 0 && first + last >= layers) {
                String what = keepFirst != null && keepLast != null ? "--keep-first " + first + " with --keep-last " + last
                        : keepFirst != null ? "--keep-first " + first : "--keep-last " + last;
                throw new UsageError(cl, what + ": expected fewer than the model's " + layers + " layers in all (no layer left to prune)");
            }
        }
    }

    /** The model's config, or null when the model cannot be opened here (the command's own checks then say why). */
    private static ModelConfig config(ParseResult p) {
        Path model = p.matchedPositionalValue(0, (Path) null);
        if (model == null || !Files.isRegularFile(model.resolve("config.json"))) {
            return null;
        }
        try (ModelDir md = ModelDir.open(model)) {
            return md.config();
        } catch (Exception | Error e) {
            return null;
        }
    }

    private static void checkSweep(CommandLine cl, ParseResult p) {
        List<String> methods = p.matchedOptionValue("--methods", List.<String>of());
        for (String m : methods) {
            if (!Criteria.names().contains(m)) {
                throw new UsageError(cl, "--methods " + m + ": expected one-shot criteria from " + String.join(", ", new TreeSet<>(Criteria.names())));
            }
            if (!p.hasMatchedOption("--calib") && Criteria.create(m, Map.of()).needsCalibration()) {
                throw new UsageError(cl, "--methods " + m + ": needs calibration data; give --calib FILE (the methods that use none ignore it)");
            }
        }
    }

    /** The one line for a usage error, e.g. "--ratio abc: expected a number (see lopper prune --help)". */
    static String line(ParameterException e) {
        CommandLine cl = e.getCommandLine();
        String help = " (see " + cl.getCommandSpec().qualifiedName() + " --help)";
        if (e instanceof UsageError) {
            return e.getMessage() + help;
        }
        if (e instanceof CommandLine.MissingParameterException m) {
            List<String> names = m.getMissing().stream().map(Validation::label).toList();
            return (names.isEmpty() ? oneLine(e.getMessage()) : String.join(", ", names) + (names.size() > 1 ? ": missing, each is required" : ": missing, it is required")) + help;
        }
        if (e instanceof CommandLine.UnmatchedArgumentException u) {
            List<String> un = u.getUnmatched();
            String first = un.isEmpty() ? "?" : un.get(0);
            List<String> suggestions = u.getSuggestions();
            if (first.equals("prune-train") && cl.getCommandSpec().parent() == null) {
                return "prune-train: no longer a command; use lopper prune MODEL --method efficientllm|bip" + help;
            }
            boolean option = first.startsWith("-");
            return first + ": " + (option ? "unknown option" : "unexpected argument") + " of " + cl.getCommandSpec().qualifiedName()
                    + (suggestions.isEmpty() ? "" : "; did you mean " + String.join(" or ", suggestions.subList(0, Math.min(3, suggestions.size()))) + "?")
                    + help;
        }
        ArgSpec arg = e.getArgSpec();
        String value = e.getValue();
        if (arg != null && value != null && e.getMessage() != null && e.getMessage().startsWith("Invalid value")) {
            return label(arg).split(" ")[0] + " " + value + ": expected " + expected(arg) + help;
        }
        return oneLine(e.getMessage()) + help;
    }

    private static String label(ArgSpec a) {
        if (a instanceof OptionSpec o) {
            return o.longestName() + (o.typeInfo().isBoolean() ? "" : " " + o.paramLabel());
        }
        return a.paramLabel();
    }

    private static String expected(ArgSpec a) {
        Class<?> t = a.typeInfo().isMultiValue() ? a.auxiliaryTypes()[0] : a.type();
        if (t == int.class || t == Integer.class || t == long.class || t == Long.class) {
            return "a whole number";
        }
        if (t == double.class || t == Double.class || t == float.class || t == Float.class) {
            return a.typeInfo().isMultiValue() ? "comma-separated numbers" : "a number";
        }
        if (t.isEnum()) {
            return "one of " + String.join(", ", a.typeInfo().getEnumConstantNames());
        }
        return "a " + t.getSimpleName().toLowerCase(Locale.ROOT);
    }

    private static String oneLine(String s) {
        if (s == null) {
            return "invalid command line";
        }
        String first = s.strip().lines().findFirst().orElse(s.strip());
        return first.replace("'", "");
    }
}
