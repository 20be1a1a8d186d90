package dev.lopper.cli;

import dev.lopper.model.ModelFormatException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.IOException;
import java.io.UncheckedIOException;

/** The {@code lopper} command line: a thin layer over the Java API. */
@Command(name = "lopper", mixinStandardHelpOptions = true, versionProvider = Version.class,
        description = "Structured pruning for LLaMA-family language models.",
        subcommands = {InspectCommand.class, PplCommand.class, GenerateCommand.class, PruneCommand.class, ExportCommand.class,
                RecoverCommand.class, EvalCommand.class, CompareCommand.class, SweepCommand.class,
                CommandLine.HelpCommand.class})
public final class Main {
    /** Global {@code --debug}: stack traces with errors (the same as -Dlopper.debug=true). */
    @picocli.CommandLine.Option(names = "--debug", scope = CommandLine.ScopeType.INHERIT,
            description = "On errors, print the stack trace after the one-line message.")
    void debug(boolean on) {
        if (on) {
            System.setProperty("lopper.debug", "true");
        }
    }

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /**
     * Runs a command line and returns its exit code: 0 success, 1 bad input (a file, its content) or failure, 2 usage
     * error (an option unknown, missing, not of its type or out of its range), 130 interrupted (the same command resumes).
     */
    public static int run(String... args) {
        return commandLine().execute(args);
    }

    /** The configured command line (tests set their own out/err writers on it). */
    public static CommandLine commandLine() {
        // Nothing is ever downloaded at run time: libtorch and the tokenizer natives come from the jar.
        System.setProperty("ai.djl.offline", "true");
        CommandLine cl = new CommandLine(new Main());
        HelpSections.install(cl.getSubcommands().get("prune"), PruneCommand.helpSections());
        // every usage error in one line (picocli's own and the range checks of Validation), exit code 2
        cl.setParameterExceptionHandler((e, args) -> {
            e.getCommandLine().getErr().println("error: " + Validation.line(e));
            e.getCommandLine().getErr().flush();
            return 2;
        });
        // every option's value is checked before any command starts work
        cl.setExecutionStrategy(parsed -> {
            Validation.check(parsed);
            // a training job that fails before its first checkpoint (bad data, say) leaves no OUT.job behind
            java.nio.file.Path out = outOf(parsed);
            boolean hadJob = out != null && java.nio.file.Files.exists(dev.lopper.training.job.JobDir.dirOf(out));
            try {
                int code = new CommandLine.RunLast().execute(parsed);
                if (out != null && code == 0) {
                    HfNote.print(out, lastOf(parsed).commandSpec().commandLine().getErr()); // what loads a non-uniform model
                }
                return code;
            } catch (CommandLine.ExecutionException e) {
                if (out != null && !hadJob) {
                    try {
                        dev.lopper.training.job.JobDir.discardIfNoProgress(out);
                    } catch (IOException | RuntimeException ignored) {
                        // the error that stopped the run is the one to report
                    }
                }
                throw e;
            }
        });
        cl.setExecutionExceptionHandler((e, cmd, parsed) -> {
            cmd.getErr().println("error: " + message(e));
            if (Boolean.getBoolean("lopper.debug")) {
                e.printStackTrace(cmd.getErr());
            }
            return 1;
        });
        return cl;
    }

    /** The {@code --out} path of the command that runs, or null. */
    private static java.nio.file.Path outOf(CommandLine.ParseResult parsed) {
        CommandLine.ParseResult last = lastOf(parsed);
        return last.hasMatchedOption("--out") && last.matchedOptionValue("--out", null) instanceof java.nio.file.Path p ? p : null;
    }

    private static CommandLine.ParseResult lastOf(CommandLine.ParseResult parsed) {
        CommandLine.ParseResult last = parsed;
        while (last.subcommand() != null) {
            last = last.subcommand();
        }
        return last;
    }

    static String message(Throwable e) {
        if (e instanceof ModelFormatException || e instanceof IllegalArgumentException || e instanceof IllegalStateException) {
            return e.getMessage();
        }
        if (e instanceof UncheckedIOException u) {
            return message(u.getCause());
        }
        if (e instanceof java.nio.file.AccessDeniedException a) {
            return a.getFile() + ": permission denied";
        }
        if (e instanceof java.nio.file.NoSuchFileException n) {
            return n.getFile() + ": does not exist";
        }
        if (e instanceof java.nio.file.FileSystemException f && f.getFile() != null) {
            return f.getFile() + ": " + (f.getReason() != null ? f.getReason() : f.getClass().getSimpleName());
        }
        if (e instanceof OutOfMemoryError) {
            return "out of memory (Java heap); give the JVM more with JAVA_OPTS=-Xmx..., or use fewer --samples / a smaller --chunk-tokens";
        }
        if (e instanceof IOException) {
            return e.getMessage() != null ? e.getMessage() : e.toString();
        }
        return e.toString() + " (run with --debug for the stack trace)";
    }
}
