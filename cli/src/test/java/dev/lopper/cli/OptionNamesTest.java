package dev.lopper.cli;

import dev.lopper.training.job.ScheduleMethods;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One name per thing: the new option names, the old spellings kept working but hidden, {@code --help} without
 * picocli format warnings and {@code lopper prune --help} in sections, method options from one table.
 */
class OptionNamesTest {
    /** The usage message of {@code lopper NAME} and what picocli printed on System.err while rendering it. */
    private static String[] help(String name) {
        PrintStream saved = System.err;
        ByteArrayOutputStream warnings = new ByteArrayOutputStream();
        String usage;
        try {
            System.setErr(new PrintStream(warnings, true, StandardCharsets.UTF_8));
            usage = Main.commandLine().getSubcommands().get(name).getUsageMessage(CommandLine.Help.Ansi.OFF);
        } finally {
            System.setErr(saved);
        }
        return new String[] {usage, warnings.toString(StandardCharsets.UTF_8)};
    }

    @Test
    void helpHasNoFormatWarnings() {
        for (String c : List.of("prune", "recover", "eval", "sweep", "ppl")) {
            String[] h = help(c);
            assertFalse(h[1].contains("WARN") || h[0].contains("WARN"), c + ": " + h[1]);
        }
    }

    @Test
    void pruneHelpIsInSections() {
        String h = help("prune")[0];
        assertTrue(h.startsWith("Usage: lopper prune [OPTIONS] MODEL"), h);
        String[] order = {"What to prune:", "Calibration", "Options of one method", "Output:", "Scheduled and iterative pruning",
                "Training (", "Recovery after pruning", "Model and device:", "General:"};
        int at = -1;
        for (String s : order) {
            int i = h.indexOf("\n" + s);
            assertTrue(i > at, s + " missing or out of order:\n" + h);
            at = i;
        }
        assertFalse(h.contains("Other options"), h);
        CommandLine prune = Main.commandLine().getSubcommands().get("prune");
        assertEquals(List.of(), HelpSections.unsectioned(prune.getCommandSpec(), PruneCommand.helpSections()));
        // every option is shown once
        assertEquals(1, h.split("--train-data=").length - 1, h);
    }

    @Test
    void oldSpellingsStillWorkButAreHidden() {
        RecoverCommand rc = new RecoverCommand();
        new CommandLine(rc).parseArgs("m", "--data", "d.txt", "--val", "v.txt", "--seq-len", "64", "--steps", "1", "--out", "o");
        RecoverCommand rn = new RecoverCommand();
        new CommandLine(rn).parseArgs("m", "--train-data", "d.txt", "--val-data", "v.txt", "--train-seq-len", "64", "--steps", "1", "--out", "o");
        assertEquals(rn.request(), rc.request());
        assertEquals(Path.of("d.txt"), rc.request().settings().data());
        assertEquals(64, rc.request().settings().options().seqLen());
        RecoverCommand rd = new RecoverCommand();
        new CommandLine(rd).parseArgs("m", "--train-data", "d.txt", "--steps", "1", "--out", "o");
        assertEquals(256, rd.request().settings().options().seqLen());
        // --train-data is required (no silent default to the fixture's text)
        CliTest.Result none = CliTest.run("recover", "m", "--steps", "1", "--out", "o");
        assertEquals(2, none.code());
        assertTrue(none.err().startsWith("error: --train-data FILE: missing, it is required"), none.err());

        EvalCommand e = new EvalCommand();
        new CommandLine(e).parseArgs("m", "--window", "32");
        assertEquals(32, e.eval.window);
        EvalCommand f = new EvalCommand();
        new CommandLine(f).parseArgs("m", "--seq-len", "32");
        assertEquals(32, f.eval.window);

        String h = help("recover")[0];
        assertTrue(h.contains("--train-data=") && h.contains("--val-data=") && h.contains("--train-seq-len="), h);
        assertFalse(h.contains("--data=") || h.contains("--val=") || h.contains("--seq-len="), h);
        String eval = help("eval")[0];
        assertTrue(eval.contains("--seq-len=") && !eval.contains("--window="), eval);
    }

    @Test
    void methodOptionsComeFromOneTable() {
        for (String m : ScheduleMethods.names()) {
            assertEquals(ScheduleMethods.get(m).options(), MethodOptions.accepted(m), m + ": the registry's options are the CLI's");
        }
        CliTest.Result r = CliTest.run("prune", "m", "--method", "magnitude", "--ratio", "0.2", "--prune-freq", "5");
        assertEquals(2, r.code()); // a usage error (Validation), before any work
        assertTrue(r.err().startsWith("error: --prune-freq is an option of --method lora-prune, not of magnitude"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        CliTest.Result c = CliTest.run("prune", "m", "--method", "flap", "--ratio", "0.2", "--reg-lr", "0.5");
        assertTrue(c.err().startsWith("error: --reg-lr is an option of --method compresso, not of flap"), c.err());
        CliTest.Result n = CliTest.run("prune", "m", "--method", "bip", "--ratio", "0.2", "--norm", "l1");
        assertTrue(n.err().startsWith("error: --norm is an option of --method adapt-pruner, magnitude, not of bip"), n.err());
    }
}
