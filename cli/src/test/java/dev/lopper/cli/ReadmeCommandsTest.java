package dev.lopper.cli;

import dev.lopper.model.testing.Fixtures;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * README.md's command list runs as written (issue 27): every {@code bin/lopper} line of its bash blocks, in order, on
 * the bundled model, each exits 0 and says about how long it takes (a trailing {@code # N s} or {@code # N min}).
 * Paths under {@code fixtures/} are the repository's, paths under {@code work/} a temporary folder's. The whole list
 * takes minutes, so it runs with {@code -Dslow}; {@link #everyCommandStatesItsTime} runs always.
 */
class ReadmeCommandsTest {
    @TempDir
    Path tmp;

    /** One README command: its arguments after {@code bin/lopper} and the seconds it says it takes. */
    record Command(List<String> args, double seconds, String line) {
    }

    static List<Command> commands() throws Exception {
        String readme = Files.readString(Fixtures.root().resolve("README.md"));
        List<Command> out = new ArrayList<>();
        Matcher block = Pattern.compile("```bash\\n(.*?)```", Pattern.DOTALL).matcher(readme);
        while (block.find()) {
            String body = block.group(1).replace("\\\n", " ");
            for (String line : body.lines().toList()) {
                String l = line.strip();
                if (!l.startsWith("bin/lopper ")) {
                    continue;
                }
                int hash = comment(l);
                String cmd = hash < 0 ? l : l.substring(0, hash).strip();
                String note = hash < 0 ? "" : l.substring(hash);
                Matcher t = Pattern.compile("#\\s*(?:about\\s*)?(\\d+(?:\\.\\d+)?)\\s*(s|min)\\b").matcher(note);
                double seconds = t.find() ? Double.parseDouble(t.group(1)) * (t.group(2).equals("min") ? 60 : 1) : -1;
                List<String> args = words(cmd.substring("bin/lopper ".length()));
                out.add(new Command(args, seconds, cmd));
            }
        }
        return out;
    }

    /** Where a line's shell comment starts (a # outside quotes after a space), or -1. */
    private static int comment(String l) {
        boolean quoted = false;
        for (int i = 0; i < l.length(); i++) {
            char c = l.charAt(i);
            if (c == '"') {
                quoted = !quoted;
            } else if (c == '#' && !quoted && i > 0 && Character.isWhitespace(l.charAt(i - 1))) {
                return i;
            }
        }
        return -1;
    }

    private static List<String> words(String s) {
        List<String> w = new ArrayList<>();
        Matcher m = Pattern.compile("\"([^\"]*)\"|'([^']*)'|(\\S+)").matcher(s);
        while (m.find()) {
            w.add(m.group(1) != null ? m.group(1) : m.group(2) != null ? m.group(2) : m.group(3));
        }
        return w;
    }

    @Test
    void everyCommandStatesItsTime() throws Exception {
        List<Command> all = commands();
        assertTrue(all.size() >= 10, "README commands: " + all.size());
        for (Command c : all) {
            assertTrue(c.seconds() > 0, "README: say about how long it takes (# N s / # N min): " + c.line());
        }
        // every report that compare reads is written by an earlier command
        List<String> written = new ArrayList<>();
        for (Command c : all) {
            if (c.args().get(0).equals("compare")) {
                for (String r : c.args().subList(1, c.args().size())) {
                    assertTrue(written.contains(r), "README: compare " + r + " but no earlier command writes it");
                }
            }
            int o = c.args().indexOf("--out");
            if (o >= 0) {
                written.add(c.args().get(o + 1));
            }
        }
    }

    @Test
    @Tag("slow")
    void theReadmeRunsAsWritten() throws Exception {
        Path root = Fixtures.root();
        StringBuilder times = new StringBuilder();
        for (Command c : commands()) {
            // the README runs from the repository root; the test's working directory is cli/
            String[] args = c.args().stream().map(a -> a.startsWith("fixtures/") ? root.resolve(a).toString()
                    : a.startsWith("work/") ? tmp.resolve(a).toString()
                    : a.equals("kjv-cloze") ? "kjv-cloze=" + root.resolve("fixtures/text/kjv-test.txt") : a).toArray(String[]::new);
            long t0 = System.nanoTime();
            CliTest.Result r = CliTest.run(args);
            double s = (System.nanoTime() - t0) / 1e9;
            times.append(String.format(Locale.ROOT, "%7.1f s (README: %.0f s)  %s%n", s, c.seconds(), c.line()));
            assertEquals(0, r.code(), c.line() + "\n" + r.err());
            assertFalse(r.err().contains("Exception"), r.err());
            // "about": a loaded 2-core machine may take a few times as long, never an order of magnitude
            assertTrue(s < 5 * c.seconds() + 60, c.line() + " took " + s + " s; the README says about " + c.seconds() + " s");
        }
        System.err.print("README commands:\n" + times);
    }
}
