package dev.lopper.eval.sweep;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A cell is claimed by an atomic create: a second claim is refused naming the holder; a claim left by a dead process
 * on this host, or untouched for {@link CellLock#STALE} on another host, is taken over; a fresh one from another host
 * is not. The status of a sweep's cells from their files, and the Slurm array's task list.
 */
class CellLockTest {
    @TempDir
    Path out;

    @Test
    void secondClaimIsRefusedUntilReleased() throws Exception {
        try (CellLock a = CellLock.acquire(out, "flap-0.20")) {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> CellLock.acquire(out, "flap-0.20"));
            assertTrue(e.getMessage().contains("cell flap-0.20: another run is writing it")
                    && e.getMessage().contains("pid " + ProcessHandle.current().pid()), e.getMessage());
            // another cell is free
            try (CellLock b = CellLock.acquire(out, "flap-0.50")) {
                assertTrue(Files.isRegularFile(CellLock.file(out, "flap-0.50")));
            }
            CellLock.Holder h = CellLock.holder(out, "flap-0.20");
            assertEquals(ProcessHandle.current().pid(), h.pid());
            assertFalse(h.stale());
        }
        assertFalse(Files.exists(CellLock.file(out, "flap-0.20")));
        assertNull(CellLock.holder(out, "flap-0.20"));
        CellLock.acquire(out, "flap-0.20").close();
    }

    @Test
    void ofEightConcurrentClaimsExactlyOneWins() throws Exception {
        int n = 8;
        java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(n);
        java.util.concurrent.CountDownLatch tried = new java.util.concurrent.CountDownLatch(n);
        java.util.concurrent.atomic.AtomicInteger won = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicInteger refused = new java.util.concurrent.atomic.AtomicInteger();
        List<Thread> threads = new java.util.ArrayList<>();
        for (int i = 0; i < n; i++) {
            Thread t = new Thread(() -> {
                try {
                    start.await();
                    try (CellLock l = CellLock.acquire(out, "race")) {
                        won.incrementAndGet();
                        tried.countDown();
                        tried.await(); // hold it until every other thread has tried
                    } catch (IllegalStateException e) {
                        refused.incrementAndGet();
                        tried.countDown();
                    }
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join(30_000);
        }
        assertEquals(1, won.get());
        assertEquals(n - 1, refused.get());
        assertFalse(Files.exists(CellLock.file(out, "race")));
    }

    @Test
    void staleClaimsAreTakenOverFreshOnesAreNot() throws Exception {
        // a process of this host that has exited
        Process p = new ProcessBuilder("true").start();
        p.waitFor();
        Files.writeString(CellLock.file(out, "a"), "host " + CellLock.host() + "\npid " + p.pid() + "\nslurm_job 7_1\nsince x\ntoken dead\n");
        try (CellLock l = CellLock.acquire(out, "a")) {
            assertEquals(ProcessHandle.current().pid(), CellLock.holder(out, "a").pid());
        }
        // another host, touched 6 minutes ago (its heartbeat stopped)
        Path b = CellLock.file(out, "b");
        Files.writeString(b, "host elsewhere\npid 1\nslurm_job 7_2\nsince x\ntoken gone\n");
        Files.setLastModifiedTime(b, FileTime.from(Instant.now().minus(CellLock.STALE).minusSeconds(60)));
        assertTrue(CellLock.holder(out, "b").stale());
        CellLock.acquire(out, "b").close();
        // another host, touched just now: alive as far as anyone here can tell
        Path c = CellLock.file(out, "c");
        Files.writeString(c, "host elsewhere\npid 1\nslurm_job 7_3\nsince x\ntoken alive\n");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> CellLock.acquire(out, "c"));
        assertTrue(e.getMessage().contains("host elsewhere, pid 1, Slurm job 7_3"), e.getMessage());
        assertTrue(Files.readString(c).contains("token alive"), "a live claim is left alone");
    }

    @Test
    void statusFromTheCellsFiles() throws Exception {
        List<Sweep.Point> points = Sweep.points(List.of("magnitude"), List.of(0.25, 0.5));
        assertEquals(List.of("dense", "magnitude-0.25", "magnitude-0.50"), points.stream().map(Sweep.Point::name).toList());
        assertEquals(List.of(0, 1, 2), points.stream().map(Sweep.Point::index).toList());
        SweepSpec spec = new SweepSpec(SweepSpec.FORMAT, "test", "now", out.toString(), List.of("m"), points,
                List.of(new SweepSpec.Submission("41", "42", List.of(0, 1, 2), "now")));
        spec.write(out);
        assertEquals(spec, SweepSpec.read(out));
        Files.createDirectories(out.resolve("dense"));
        Files.writeString(out.resolve("dense").resolve(Sweep.REPORT), "{\"format\":\"lopper-eval/1\",\"parameters\":5}");
        Files.createDirectories(out.resolve("magnitude-0.25"));
        Files.writeString(out.resolve("magnitude-0.25.log"), "== attempt 1\nerror: an old error\n== attempt 2\ncell magnitude-0.25: prune\n"
                + "error: --methods magnitude: out of memory (Java heap)\n");
        Files.createDirectories(out.resolve(Slurm.DIR));
        Files.writeString(out.resolve(Slurm.DIR).resolve("41_2.out"),
                "slurmstepd-node7: error: *** JOB 44 ON node7 CANCELLED AT 2026-12-07T15:10:29 DUE TO TIME LIMIT ***\n");
        List<SweepStatus.Row> rows = SweepStatus.of(out, spec, Map.of());
        assertEquals(List.of(SweepStatus.State.DONE, SweepStatus.State.FAILED, SweepStatus.State.FAILED),
                rows.stream().map(SweepStatus.Row::state).toList());
        assertEquals("--methods magnitude: out of memory (Java heap)", rows.get(1).detail());
        assertEquals("Slurm job 41_2: *** JOB 44 ON node7 CANCELLED AT 2026-12-07T15:10:29 DUE TO TIME LIMIT ***", rows.get(2).detail());
        // Slurm's word wins while it knows the task
        rows = SweepStatus.of(out, spec, Map.of(2, new Slurm.TaskState("41_2", "PENDING", "JobArrayTaskLimit"),
                1, new Slurm.TaskState("41_1", "RUNNING", "None")));
        assertEquals("Slurm job 41_2 PENDING (JobArrayTaskLimit)", rows.get(2).detail());
        assertEquals(SweepStatus.State.RUNNING, rows.get(1).state());
        assertEquals("1 done, 1 running, 1 pending, 0 failed", SweepStatus.summary(rows));
        // a cell never started
        SweepSpec local = new SweepSpec(SweepSpec.FORMAT, "test", "now", out.toString(), List.of("m"),
                Sweep.points(List.of("flap"), List.of(0.5)), List.of());
        assertEquals("not started", SweepStatus.of(out, local, Map.of()).get(1).detail());
    }

    @Test
    void arrayTaskList() {
        assertEquals("0-3", Slurm.arraySpec(List.of(3, 1, 0, 2)));
        assertEquals("1,4-5,9", Slurm.arraySpec(List.of(9, 5, 4, 1)));
        assertEquals("2", Slurm.arraySpec(List.of(2)));
    }
}
