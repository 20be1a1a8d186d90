package dev.lopper.model.util;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Progress on a terminal redraws one line; without one it writes plain lines, also within a long layer. */
class ProgressTest {
    private static String run(boolean tty, long everyNanos) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        Progress p = new Progress.Console(new PrintStream(bytes, true, StandardCharsets.UTF_8), tty, everyNanos);
        p.update(0, 2, 100, 400, 1.0, 1.0);
        p.update(0, 2, 200, 400, 2.0, 2.0);
        p.layerDone(0, 2, 400, 4.0, 4.0);
        return bytes.toString(StandardCharsets.UTF_8);
    }

    @Test
    void plainLinesWithinALayerWithoutATerminal() {
        String out = run(false, 0);
        assertFalse(out.contains("\r"), "no carriage returns in a log: " + out);
        String[] lines = out.split("\n");
        assertEquals(3, lines.length, out);
        assertEquals("layer 1/2: 25% (100 of 400 tokens), 100 tok/s, ETA 7s", lines[0]);
        assertTrue(lines[2].startsWith("layer 1/2: 400 tokens in 4.0 s"), lines[2]);
    }

    @Test
    void plainLinesAreThrottled() {
        String out = run(false, Long.MAX_VALUE);
        assertEquals(1, out.split("\n").length, "only the layer's own line: " + out);
    }

    @Test
    void aTerminalGetsOneRedrawnBar() {
        String out = run(true, 0);
        assertTrue(out.startsWith("\rlayer 1/2 [######                  ]  25.0%"), out);
        assertEquals(1, out.chars().filter(c -> c == '\n').count(), "one line per finished layer: " + out);
    }
}
