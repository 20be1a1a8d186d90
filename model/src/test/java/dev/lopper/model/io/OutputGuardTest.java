package dev.lopper.model.io;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The library-level half of the output rule: whatever a caller checked, a user's directory is never replaced. */
class OutputGuardTest {
    @TempDir
    Path tmp;

    @Test
    void atomicReplaceRefusesADirectoryLopperDidNotWrite() throws Exception {
        Path user = Files.createDirectories(tmp.resolve("user"));
        Files.writeString(user.resolve("thesis.tex"), "mine");
        Path fresh = AtomicDirectory.createTemp(user);
        Files.writeString(fresh.resolve("config.json"), "{}");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> AtomicDirectory.replace(fresh, user));
        assertTrue(e.getMessage().contains(OutputGuard.MARKER), e.getMessage());
        assertEquals("mine", Files.readString(user.resolve("thesis.tex")));
        // with the marker it is Lopper's own output, replaced whole
        Files.writeString(user.resolve(OutputGuard.MARKER), "{}");
        AtomicDirectory.replace(fresh, user);
        assertFalse(Files.exists(user.resolve("thesis.tex")));
        assertTrue(Files.exists(user.resolve("config.json")));
    }

    @Test
    void overlapIsFoundForPathsThatDoNotExistYet() {
        Path in = tmp.resolve("a/model");
        assertThrows(IllegalArgumentException.class, () -> OutputGuard.checkNotOverlapping(tmp.resolve("a"), "--out", in));
        assertThrows(IllegalArgumentException.class, () -> OutputGuard.checkNotOverlapping(in.resolve("x/y"), "--out", in));
        assertThrows(IllegalArgumentException.class, () -> OutputGuard.checkNotOverlapping(tmp.resolve("a/./model/../model"), "--out", in));
        assertDoesNotThrow(() -> OutputGuard.checkNotOverlapping(tmp.resolve("a/model-pruned"), "--out", in));
    }

    @Test
    void aFileIsNotADirectoryToWriteInto() throws Exception {
        Path f = Files.writeString(tmp.resolve("f.txt"), "x");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> OutputGuard.checkDirectory(f, true, "--out"));
        assertTrue(e.getMessage().contains("existing file"), e.getMessage());
    }

    @Test
    void tooLittleFreeSpaceIsFoundBeforeAnyWork() {
        Path out = tmp.resolve("big/out");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> OutputGuard.checkFreeSpace(out, Long.MAX_VALUE / 4, "--out"));
        assertTrue(e.getMessage().startsWith("--out " + out + ": needs about ") && e.getMessage().contains("MiB are free there"), e.getMessage());
        assertDoesNotThrow(() -> OutputGuard.checkFreeSpace(out, 1024, "--out"));
    }
}
