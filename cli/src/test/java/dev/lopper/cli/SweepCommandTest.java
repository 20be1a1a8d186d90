package dev.lopper.cli;

import dev.lopper.eval.sweep.SweepSpec;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code lopper sweep} without a cluster: the specification it writes, {@code --status}, the array task's
 * {@code --run-cell} and the collection job's {@code --collect} on a local sweep, and the one-line errors of the
 * executor options. The real Slurm runs are {@link SweepSlurmTest}.
 */
class SweepCommandTest {
    @TempDir
    Path tmp;

    @Test
    void specificationStatusRunCellCollectAndErrors() throws Exception {
        Path model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama());
        Path text = tmp.resolve("t.txt");
        Files.writeString(text, Files.readString(Fixtures.text("test")).substring(0, 1500));
        Path out = tmp.resolve("sweep");
        List<String> base = List.of("sweep", model.toString(), "--methods", "magnitude", "--ratios", "0.25,0.5", "--text", text.toString(),
                "--task", "kjv-cloze=" + Fixtures.text("test"), "--limit", "3", "--no-speed", "--out", out.toString());
        CliTest.Result first = CliTest.run(base.toArray(String[]::new));
        assertEquals(0, first.code(), first.err());
        assertEquals(3, first.out().lines().filter(l -> l.startsWith("| dense") || l.startsWith("| magnitude-")).count(), first.out());

        SweepSpec spec = SweepSpec.read(out);
        assertEquals(List.of("dense", "magnitude-0.25", "magnitude-0.50"), spec.cells().stream().map(c -> c.name()).toList());
        assertEquals(model.toAbsolutePath().normalize().toString(), spec.args().get(0));
        assertTrue(spec.args().contains("--ratios=0.25,0.5") && spec.args().contains("--text=" + text.toAbsolutePath()), spec.args().toString());
        assertFalse(spec.args().stream().anyMatch(a -> a.startsWith("--out")), "where it runs is not what it computes");

        CliTest.Result status = CliTest.run("sweep", "--status", out.toString());
        assertEquals(0, status.code(), status.err());
        assertEquals(3, status.out().lines().filter(l -> l.contains(" done ")).count(), status.out());
        assertTrue(status.out().contains("3 done, 0 running, 0 pending, 0 failed"), status.out());

        // an array task for a finished cell does nothing; for a cell without its report it redoes the cell
        CliTest.Result skip = CliTest.run("sweep", "--run-cell", out.toString(), "1");
        assertEquals(0, skip.code(), skip.err());
        assertTrue(skip.out().contains("cell magnitude-0.25: finished earlier, skipped"), skip.out());
        Path half = out.resolve("magnitude-0.50").resolve("report.json");
        // two tasks never write one cell: while another run holds it, a task for it stops with the holder's name
        Files.delete(half);
        try (dev.lopper.eval.sweep.CellLock held = dev.lopper.eval.sweep.CellLock.acquire(out, "magnitude-0.50")) {
            assertError(List.of("sweep", "--run-cell", out.toString(), "2"), "cell magnitude-0.50: another run is writing it",
                    "pid " + ProcessHandle.current().pid());
            CliTest.Result running = CliTest.run("sweep", "--status", out.toString());
            assertTrue(running.out().contains("magnitude-0.50  running  host "), running.out());
        }
        assertEquals(0, CliTest.run("sweep", "--run-cell", out.toString(), "2").code());
        byte[] before = Files.readAllBytes(half);
        Files.delete(half);
        CliTest.Result missing = CliTest.run("sweep", "--collect", out.toString());
        assertEquals(1, missing.code());
        assertTrue(missing.err().contains("1 of 3 cells have no report (magnitude-0.50)"), missing.err());
        assertTrue(Files.readString(out.resolve("results.md")).contains("Unfinished (no report yet): magnitude-0.50"));
        CliTest.Result failed = CliTest.run("sweep", "--status", out.toString());
        assertTrue(failed.out().contains("magnitude-0.50  failed   stopped without a report"), failed.out());
        CliTest.Result redo = CliTest.run("sweep", "--run-cell", out.toString(), "2");
        assertEquals(0, redo.code(), redo.err());
        assertTrue(redo.out().contains("cell magnitude-0.50: done"), redo.out());
        // the same cell computed again: the same numbers (the date and machine fields aside)
        String again = Files.readString(half);
        assertEquals(field(new String(before), "parameters"), field(again, "parameters"));
        assertEquals(field(new String(before), "perplexity", "perplexity"), field(again, "perplexity", "perplexity"));
        CliTest.Result collect = CliTest.run("sweep", "--collect", out.toString());
        assertEquals(0, collect.code(), collect.err());
        assertEquals(first.out().lines().filter(l -> l.startsWith("|")).toList(), collect.out().lines().filter(l -> l.startsWith("|")).toList());

        // a rerun with the Slurm executor of a finished sweep submits nothing
        List<String> slurm = new ArrayList<>(base);
        slurm.addAll(List.of("--executor", "slurm"));
        CliTest.Result none = CliTest.run(slurm.toArray(String[]::new));
        assertEquals(0, none.code(), none.err());
        assertTrue(none.out().contains("all 3 cells finished earlier; nothing submitted"), none.out());

        // one-line errors
        assertError(with(base, "--ratios", "0.25"), "--out " + out + ": holds a sweep with other settings", "has --ratios 0.25,0.5, this command --ratios 0.25");
        assertError(plus(base, "--partition", "gpu"), "--partition: only with --executor slurm; found --executor local", "(see lopper sweep --help)");
        assertError(plus(base, "--executor", "pbs"), "--executor pbs: expected local or slurm", "(see lopper sweep --help)");
        assertError(with(plus(base, "--executor", "slurm"), "--out", tmp.resolve("new").toString()),
                "--jar: not given, and this command does not run from a jar");
        assertError(with(base, "--methods", "nope"), "--methods nope: expected one-shot criteria from angular, block-influence, cfsp", "(see lopper sweep --help)");
        assertError(with(base, "--out", tmp.resolve("other").toString(), "--methods", "flap"), "--methods flap: needs calibration data; give --calib FILE", "(see lopper sweep --help)");
        assertError(plus(plus(base, "--executor", "slurm"), "--max-parallel", "0"), "--max-parallel 0: expected at least 1", "(see lopper sweep --help)");
        assertError(List.of("sweep", "--status", tmp.toString()), tmp + ": no sweep.json; expected a sweep directory");
        assertError(List.of("sweep", "--run-cell", out.toString(), "3"), "--run-cell " + out + " 3: expected a cell index from 0 to 2");
    }

    private static String field(String json, String... path) throws Exception {
        com.fasterxml.jackson.databind.JsonNode n = new com.fasterxml.jackson.databind.ObjectMapper().readTree(json);
        for (String p : path) {
            n = n.get(p);
        }
        return n.toString();
    }

    private static void assertError(List<String> args, String... expected) {
        CliTest.Result r = CliTest.run(args.toArray(String[]::new));
        // exit 2 for options that do not fit together (usage), 1 for what the files say
        boolean usage = r.err().contains("(see lopper sweep --help)");
        assertEquals(usage ? 2 : 1, r.code(), r.out() + r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        for (String e : expected) {
            assertTrue(r.err().contains(e), "expected '" + e + "' in: " + r.err());
        }
    }

    private static List<String> plus(List<String> args, String... more) {
        List<String> a = new ArrayList<>(args);
        a.addAll(Arrays.asList(more));
        return a;
    }

    /** args with the values of some options replaced: name, value, name, value... */
    private static List<String> with(List<String> args, String... pairs) {
        List<String> a = new ArrayList<>(args);
        for (int i = 0; i < pairs.length; i += 2) {
            int at = a.indexOf(pairs[i]);
            a.set(at + 1, pairs[i + 1]);
        }
        return a;
    }
}
