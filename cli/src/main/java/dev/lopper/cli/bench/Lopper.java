package dev.lopper.cli.bench;

import dev.lopper.cli.Main;
import dev.lopper.cli.PruneCommand;
import picocli.CommandLine;

/**
 * {@link Main} with {@code prune} added when Main does not register it yet, so that scripts (scripts/results/*)
 * run the same commands as {@code bin/lopper} on any branch.
 */
public final class Lopper {
    private Lopper() {
    }

    public static void main(String[] args) {
        CommandLine cl = Main.commandLine();
        if (!cl.getSubcommands().containsKey("prune")) {
            cl.addSubcommand("prune", new PruneCommand());
        }
        System.exit(cl.execute(args));
    }
}
