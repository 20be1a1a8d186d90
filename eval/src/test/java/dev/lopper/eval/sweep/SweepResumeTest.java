package dev.lopper.eval.sweep;

import dev.lopper.eval.EvalRequest;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A sweep killed half-way and rerun redoes only the unfinished cell; finished reports are not rewritten. */
class SweepResumeTest {
    @TempDir
    Path tmp;

    @Test
    void rerunSkipsFinishedCellsAndRedoesHalfDoneOnes() throws Exception {
        Path model = tmp.resolve("m");
        RandomModels.write(model, RandomModels.llama());
        Path text = tmp.resolve("t.txt");
        Files.writeString(text, Files.readString(Fixtures.text("test")).substring(0, 1500));
        Path out = tmp.resolve("sweep");
        Sweep.Request req = new Sweep.Request(model, List.of("magnitude"), List.of(0.25, 0.5), null, null, 1, out,
                m -> EvalRequest.builder(m).text(text).task(EvalRequest.Task.kjvCloze(Fixtures.text("test"))).limit(4)
                        .prefillTokens(16).decodeTokens(4).build(), null);
        List<Sweep.Cell> first = new Sweep().run(req);
        assertEquals(List.of("dense", "magnitude-0.25", "magnitude-0.50"), first.stream().map(Sweep.Cell::name).toList());
        assertTrue(first.stream().noneMatch(Sweep.Cell::skipped));
        assertTrue(first.get(2).report().parameters() < first.get(1).report().parameters());
        Path dense = out.resolve("dense").resolve(Sweep.REPORT);
        Path quarter = out.resolve("magnitude-0.25").resolve(Sweep.REPORT);
        Path half = out.resolve("magnitude-0.50").resolve(Sweep.REPORT);
        // a run killed while the 0.50 cell was being evaluated: its model is there, its report is not
        Files.delete(half);
        Files.writeString(out.resolve("magnitude-0.50").resolve("stray.tmp"), "half-written");
        FileTime denseTime = Files.getLastModifiedTime(dense);
        FileTime quarterTime = Files.getLastModifiedTime(quarter);
        byte[] quarterBytes = Files.readAllBytes(quarter);
        Thread.sleep(1100);
        List<Sweep.Cell> second = new Sweep().run(req);
        assertEquals(List.of(true, true, false), second.stream().map(Sweep.Cell::skipped).toList());
        assertEquals(denseTime, Files.getLastModifiedTime(dense));
        assertEquals(quarterTime, Files.getLastModifiedTime(quarter));
        assertArrayEquals(quarterBytes, Files.readAllBytes(quarter));
        assertTrue(Files.isRegularFile(half));
        assertFalse(Files.exists(out.resolve("magnitude-0.50").resolve("stray.tmp")), "a half-done cell is redone from scratch");
        String md = Files.readString(out.resolve("results.md"));
        assertEquals(2 + 3, md.lines().count(), md);
        for (String png : List.of("ppl-vs-ratio.png", "acc-vs-ratio.png", "speed-vs-params.png")) {
            byte[] head = java.util.Arrays.copyOf(Files.readAllBytes(out.resolve(png)), 4);
            assertArrayEquals(new byte[] {(byte) 0x89, 'P', 'N', 'G'}, head, png);
        }
    }
}
