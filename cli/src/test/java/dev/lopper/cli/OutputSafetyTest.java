package dev.lopper.cli;

import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every writer refuses to delete or replace what Lopper did not create (the reliability issue's data-loss cases,
 * command for command): an output equal to, inside or above an input, an existing user directory or file, and
 * {@code --overwrite} on anything without Lopper's marker. Each refusal leaves every file byte for byte as it was.
 */
class OutputSafetyTest {
    @TempDir
    Path tmp;
    Path parent;
    Path model;

    @BeforeEach
    void writeModel() throws Exception {
        parent = tmp.resolve("parent");
        model = parent.resolve("model");
        RandomModels.write(model, RandomModels.llama());
        Files.writeString(parent.resolve("notes.txt"), "mine");
    }

    private record Run(int code, String out, String err) {
    }

    private static Run lopper(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = Main.commandLine();
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int code = cl.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    /** Every file under {@code dir} with its bytes' hash: compared before and after a refused command. */
    private static Map<String, Integer> snapshot(Path dir) throws IOException {
        Map<String, Integer> m = new TreeMap<>();
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.filter(Files::isRegularFile).toList()) {
                m.put(dir.relativize(p).toString(), java.util.Arrays.hashCode(Files.readAllBytes(p)));
            }
        }
        return m;
    }

    private void assertRefused(Run r, String why, Path watched, Map<String, Integer> before) throws IOException {
        assertEquals(1, r.code(), "must be refused: " + r.out() + r.err());
        assertTrue(r.err().startsWith("error: ") && r.err().contains(why), r.err());
        assertEquals(1, r.err().strip().lines().count(), "one-line error: " + r.err());
        assertEquals(before, snapshot(watched), "a refused command must leave every file as it was");
    }

    @Test
    void pruneIntoTheInputsParentIsRefused() throws Exception {
        Map<String, Integer> before = snapshot(tmp);
        assertRefused(lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out", parent.toString()),
                "contains the input", tmp, before);
        assertRefused(lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out", parent.toString(),
                "--overwrite"), "contains the input", tmp, before);
    }

    @Test
    void pruneIntoOrInsideTheInputIsRefused() throws Exception {
        Map<String, Integer> before = snapshot(tmp);
        assertRefused(lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out", model.toString()),
                "is the input", tmp, before);
        assertRefused(lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out",
                model.resolve("pruned").toString()), "inside the input", tmp, before);
        assertRefused(lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--plan-out",
                model.resolve("plan.json").toString()), "inside the input", tmp, before);
        // through a symbolic link to the input: the same directory
        Path link = Files.createSymbolicLink(tmp.resolve("link"), model);
        before = snapshot(tmp);
        assertRefused(lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out", link.toString()),
                "--out", tmp, before);
    }

    @Test
    void aUsersNonEmptyDirectoryIsNeverReplacedEvenWithOverwrite() throws Exception {
        Path thesis = tmp.resolve("thesis");
        Files.createDirectories(thesis.resolve("sub"));
        Files.writeString(thesis.resolve("thesis.tex"), "\\documentclass{article}");
        Files.writeString(thesis.resolve("sub/figure.txt"), "data");
        Map<String, Integer> before = snapshot(tmp);
        assertRefused(lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out", thesis.toString()),
                "Lopper did not write", tmp, before);
        assertRefused(lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out", thesis.toString(),
                "--overwrite"), "Lopper did not write", tmp, before);
        assertRefused(lopper("export", model.toString(), "--format", "onnx", "--out", thesis.toString(), "--overwrite"),
                "Lopper did not write", tmp, before);
    }

    @Test
    void exportOntoItsInputIsRefused() throws Exception {
        Map<String, Integer> before = snapshot(tmp);
        for (String format : new String[] {"onnx", "torchscript", "hf"}) {
            assertRefused(lopper("export", model.toString(), "--format", format, "--out", model.toString()), "is the input", tmp, before);
            assertRefused(lopper("export", model.toString(), "--format", format, "--out", parent.toString(), "--overwrite"),
                    "contains the input", tmp, before);
        }
    }

    @Test
    void aPlanOutThatIsNotALopperPlanIsRefused() throws Exception {
        Path file = tmp.resolve("essay.json");
        Files.writeString(file, "{\"title\": \"mine\"}");
        Path dir = Files.createDirectories(tmp.resolve("plans"));
        Map<String, Integer> before = snapshot(tmp);
        assertRefused(lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--plan-out", file.toString(),
                "--overwrite"), "not a file Lopper wrote", tmp, before);
        assertRefused(lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--plan-out", dir.toString()),
                "is a directory", tmp, before);
    }

    @Test
    void lopperOutputsAreReplacedOnlyWithOverwrite() throws Exception {
        Path out = tmp.resolve("pruned");
        Path plan = tmp.resolve("plan.json");
        String[] prune = {"prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out", out.toString(),
                "--plan-out", plan.toString()};
        assertEquals(0, lopper(prune).code());
        assertTrue(OutputGuard.isLopperOutput(out), "a prune output carries the marker");
        Map<String, Integer> before = snapshot(tmp);
        assertRefused(lopper(prune), "--overwrite", tmp, before);
        String[] again = java.util.Arrays.copyOf(prune, prune.length + 1);
        again[prune.length] = "--overwrite";
        Run r = lopper(again);
        assertEquals(0, r.code(), r.err());
        assertTrue(Files.exists(out.resolve("model.safetensors")) && Files.exists(plan));
        // an empty directory (e.g. made by mkdir beforehand) is fine without --overwrite
        Path empty = Files.createDirectories(tmp.resolve("empty"));
        assertEquals(0, lopper("export", out.toString(), "--format", "hf", "--out", empty.toString()).code());
        assertTrue(OutputGuard.isLopperOutput(empty), "an export carries the marker");
        assertTrue(Files.exists(parent.resolve("notes.txt")));
    }

    @Test
    void aSecondRunOnALockedOutputFailsAtOnce() throws Exception {
        Path out = tmp.resolve("pruned");
        try (dev.lopper.model.io.OutputLock held = dev.lopper.model.io.OutputLock.acquire(out, "--out")) {
            Run r = lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out", out.toString());
            assertEquals(1, r.code());
            assertTrue(r.err().contains("another Lopper run is writing it"), r.err());
            Run e = lopper("export", model.toString(), "--format", "hf", "--out", out.toString());
            assertEquals(1, e.code());
            assertTrue(e.err().contains("another Lopper run is writing it"), e.err());
            assertFalse(Files.exists(out));
        }
        assertEquals(0, lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out", out.toString()).code());
        assertFalse(Files.exists(tmp.resolve(".pruned.lock")), "the lock file goes with the run");
    }

    @Test
    void temporariesOfKilledRunsAreRemovedOnTheNextRunAndOthersKept() throws Exception {
        Path out = tmp.resolve("onnx");
        // pid 999999999 is above Linux's pid_max: that writer is certainly gone
        Path stale = Files.createDirectories(tmp.resolve(".onnx.tmp-999999999-123-0"));
        Files.writeString(stale.resolve("model.onnx"), "partial");
        Path live = Files.createDirectories(tmp.resolve(".onnx.tmp-" + ProcessHandle.current().pid() + "-1-0"));
        java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
        java.io.PrintStream old = System.err;
        System.setErr(new java.io.PrintStream(err, true));
        try {
            assertEquals(0, lopper("export", model.toString(), "--format", "onnx", "--out", out.toString()).code());
        } finally {
            System.setErr(old);
        }
        assertFalse(Files.exists(stale), "a dead run's temporary is removed");
        assertTrue(Files.exists(live), "a live run's temporary is left alone");
        assertTrue(err.toString().contains("warning: removing " + stale), err.toString());
    }

    @Test
    void writtenFilesFollowTheUmask() throws Exception {
        Path out = tmp.resolve("pruned");
        Path plan = tmp.resolve("plan.json");
        assertEquals(0, lopper("prune", model.toString(), "--method", "magnitude", "--ratio", "0.2", "--out", out.toString(),
                "--plan-out", plan.toString()).code());
        // what this process's umask gives a plainly created file and directory
        var filePerms = Files.getPosixFilePermissions(Files.createFile(tmp.resolve("probe.txt")));
        var dirPerms = Files.getPosixFilePermissions(Files.createDirectory(tmp.resolve("probe-dir")));
        assertEquals(dirPerms, Files.getPosixFilePermissions(out));
        assertEquals(filePerms, Files.getPosixFilePermissions(plan));
        try (Stream<Path> s = Files.list(out)) {
            for (Path p : s.toList()) {
                assertEquals(filePerms, Files.getPosixFilePermissions(p), p.toString());
            }
        }
    }
}
