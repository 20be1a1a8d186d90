package dev.lopper.cli;

import dev.lopper.eval.sweep.SweepSpec;
import dev.lopper.model.testing.TestLog;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * {@code lopper sweep --executor slurm} on a real single-node Slurm (Debian's slurm-wlm and munge, started by
 * {@code scripts/slurm-local}, or the cluster SLURM_CONF names): a 4-cell sweep on the fixture gives the same
 * results.md as {@code --executor local}, and a cell cancelled mid-run ({@code scancel} of its array task) is redone
 * by the rerun and nothing else is. Runs the shaded jar, so it runs in the {@code slurm} profile's integration-test
 * phase, after package: {@code mvn -B -ntp verify -Pslurm -pl cli -am -Dtest=SweepSlurmTest
 * -Dsurefire.failIfNoSpecifiedTests=false} (as root; .ci/run does it).
 */
@Tag("slurm")
class SweepSlurmTest {
    private static final Path ROOT = Path.of(System.getProperty("lopper.repo.root", "..")).toAbsolutePath().normalize();
    private static final Path JAR = ROOT.resolve("cli/target/lopper.jar");
    private static final Duration SWEEP_TIMEOUT = Duration.ofMinutes(10);

    private static Path work;
    private static Path cluster;
    private static final Map<String, String> ENV = new HashMap<>();
    private static List<String> sweepArgs;
    private static String localTable;

    record Run(int code, String out) {
    }

    @BeforeAll
    static void clusterAndLocalSweep() throws Exception {
        assertTrue(Files.isRegularFile(JAR), JAR + ": missing; this test runs the shaded jar (mvn verify -Pslurm runs it after package)");
        work = Files.createTempDirectory("lopper-slurm-test");
        String conf = System.getenv("SLURM_CONF");
        if (conf != null && run(List.of("sinfo", "-h"), Duration.ofSeconds(30)).code() == 0) {
            ENV.put("SLURM_CONF", conf);
        } else {
            cluster = work.resolve("cluster");
            Run up = run(List.of(ROOT.resolve("scripts/slurm-local").toString(), "start", cluster.toString()), Duration.ofMinutes(2));
            assertEquals(0, up.code(), "scripts/slurm-local start: " + up.out());
            String line = up.out().lines().filter(l -> l.startsWith("export SLURM_CONF=")).findFirst().orElseThrow();
            ENV.put("SLURM_CONF", line.substring("export SLURM_CONF=".length()).strip());
        }
        // perplexity on the first 40,000 characters of the validation split keeps each cell near 10 s
        Path text = work.resolve("kjv-valid-part.txt");
        Files.writeString(text, Files.readString(ROOT.resolve("fixtures/text/kjv-valid.txt")).substring(0, 40_000));
        sweepArgs = List.of("sweep", "fixtures/lopper-tiny", "--methods", "magnitude,wanda-sp,flap", "--ratios", "0.3",
                "--calib", "fixtures/text/kjv-train.txt", "--samples", "8", "--text", text.toString(), "--task", "kjv-cloze",
                "--limit", "20", "--no-speed", "--threads", "1");
        Run local = lopper(args("--out", work.resolve("local").toString()));
        assertEquals(0, local.code(), local.out());
        localTable = Files.readString(work.resolve("local/results.md"));
        TestLog.printf("%s%n", "local sweep:\n" + localTable);
    }

    @AfterAll
    static void stop() throws Exception {
        if (cluster != null) {
            Run down = run(List.of(ROOT.resolve("scripts/slurm-local").toString(), "stop", cluster.toString()), Duration.ofMinutes(1));
            assertEquals(0, down.code(), down.out());
        }
        if (work != null) {
            try (Stream<Path> s = Files.walk(work)) {
                s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    @Test
    void slurmSweepGivesTheLocalTable() throws Exception {
        Path out = work.resolve("slurm");
        Run r = lopper(args("--out", out.toString(), "--executor", "slurm", "--cpus-per-task", "1", "--max-parallel", "2", "--wait"));
        assertEquals(0, r.code(), r.out());
        assertTrue(r.out().contains("submitted 4 of 4 cells as Slurm array job"), r.out());
        assertTrue(r.out().contains("4 done, 0 running, 0 pending, 0 failed; collection job"), r.out());
        String table = Files.readString(out.resolve("results.md"));
        assertEquals(localTable, table, "the Slurm sweep's results.md differs from the local one");
        // the table holds what it should: 4 rows, every pruned model smaller and worse than the dense one
        List<String[]> rows = table.lines().filter(l -> l.startsWith("| ") && !l.startsWith("| cell")).map(l -> l.split("\\|")).toList();
        assertEquals(4, rows.size(), table);
        double densePpl = Double.parseDouble(rows.get(0)[6].strip());
        long denseParams = Long.parseLong(rows.get(0)[4].strip().replace(",", ""));
        for (String[] row : rows.subList(1, 4)) {
            assertTrue(Double.parseDouble(row[6].strip()) > densePpl, Arrays.toString(row));
            assertTrue(Long.parseLong(row[4].strip().replace(",", "")) < denseParams * 0.85, Arrays.toString(row));
        }
        SweepSpec spec = SweepSpec.read(out);
        assertEquals(1, spec.submissions().size());
        assertEquals(List.of(0, 1, 2, 3), spec.submissions().get(0).cells());
        for (String cell : List.of("dense", "magnitude-0.30", "wanda-sp-0.30", "flap-0.30")) {
            String log = Files.readString(out.resolve(cell + ".log"));
            assertTrue(log.startsWith("== ") && log.contains("Slurm job " + spec.submissions().get(0).arrayJob() + "_")
                    && log.contains("cell " + cell + ": done"), cell + ".log: " + log);
        }
        for (String png : List.of("ppl-vs-ratio.png", "acc-vs-ratio.png", "speed-vs-params.png")) {
            assertArrayEquals(new byte[] {(byte) 0x89, 'P', 'N', 'G'}, Arrays.copyOf(Files.readAllBytes(out.resolve(png)), 4), png);
        }
    }

    @Test
    void cancelledCellIsRedoneByTheRerunAndNothingElse() throws Exception {
        Path out = work.resolve("cancel");
        List<String> submit = args("--out", out.toString(), "--executor", "slurm", "--cpus-per-task", "1", "--max-parallel", "2");
        Run first = lopper(submit);
        assertEquals(0, first.code(), first.out());
        SweepSpec spec = SweepSpec.read(out);
        String array = spec.submissions().get(0).arrayJob();
        String collect = spec.submissions().get(0).collectJob();
        // cancel cell 2 (wanda-sp-0.30) once it is pruning
        Path log = out.resolve("wanda-sp-0.30.log");
        long deadline = System.nanoTime() + SWEEP_TIMEOUT.toNanos();
        while (!(Files.isRegularFile(log) && Files.readString(log).contains("cell wanda-sp-0.30: prune"))) {
            assertTrue(System.nanoTime() < deadline, "cell 2 never started: " + lopper(List.of("sweep", "--status", out.toString())).out());
            Thread.sleep(100);
        }
        Run cancel = run(List.of("scancel", array + "_2"), Duration.ofSeconds(30));
        assertEquals(0, cancel.code(), cancel.out());
        waitForJob(collect);

        Run status = lopper(List.of("sweep", "--status", out.toString()));
        assertEquals(0, status.code(), status.out());
        String cancelled = status.out().lines().filter(l -> l.contains("wanda-sp-0.30")).findFirst().orElse("");
        assertTrue(cancelled.contains("failed") && cancelled.contains("Slurm job " + array + "_2") && cancelled.contains("CANCELLED"), status.out());
        assertTrue(status.out().contains("3 done, 0 running, 0 pending, 1 failed"), status.out());
        assertTrue(Files.readString(out.resolve("results.md")).contains("Unfinished (no report yet): wanda-sp-0.30."));
        TestLog.printf("%s%n", "after scancel:\n" + status.out());

        Map<String, FileTime> times = new HashMap<>();
        Map<String, byte[]> bytes = new HashMap<>();
        for (String cell : List.of("dense", "magnitude-0.30", "flap-0.30")) {
            Path rep = out.resolve(cell).resolve("report.json");
            times.put(cell, Files.getLastModifiedTime(rep));
            bytes.put(cell, Files.readAllBytes(rep));
        }
        List<String> rerun = new ArrayList<>(submit);
        rerun.add("--wait");
        Run second = lopper(rerun);
        assertEquals(0, second.code(), second.out());
        assertTrue(second.out().matches("(?s).*submitted 1 of 4 cells as Slurm array job [0-9]+ \\(2:wanda-sp-0\\.30\\).*"), second.out());
        for (String cell : times.keySet()) {
            Path rep = out.resolve(cell).resolve("report.json");
            assertEquals(times.get(cell), Files.getLastModifiedTime(rep), cell + " was rewritten");
            assertArrayEquals(bytes.get(cell), Files.readAllBytes(rep), cell + " was rewritten");
        }
        String redone = Files.readString(log);
        assertEquals(2, redone.lines().filter(l -> l.startsWith("== ")).count(), redone);
        assertTrue(redone.contains("cell wanda-sp-0.30: left half-done by an earlier run, redone"), redone);
        assertEquals(localTable, Files.readString(out.resolve("results.md")), "the resumed Slurm sweep's results.md differs from the local one");
        assertEquals(2, SweepSpec.read(out).submissions().size());
    }

    private static void waitForJob(String job) throws Exception {
        long deadline = System.nanoTime() + SWEEP_TIMEOUT.toNanos();
        while (true) {
            Run q = run(List.of("squeue", "--states=all", "-h", "-j", job, "-o", "%T"), Duration.ofSeconds(30));
            String state = q.out().strip();
            if (q.code() != 0 || !(state.equals("PENDING") || state.equals("RUNNING") || state.equals("COMPLETING") || state.equals("CONFIGURING"))) {
                return;
            }
            if (System.nanoTime() > deadline) {
                fail("job " + job + " still " + state + " after " + SWEEP_TIMEOUT);
            }
            Thread.sleep(1000);
        }
    }

    private static List<String> args(String... more) {
        List<String> a = new ArrayList<>(sweepArgs);
        a.addAll(Arrays.asList(more));
        return a;
    }

    /** {@code java -jar lopper.jar ARGS} from the repository root, with the cluster's SLURM_CONF. */
    private static Run lopper(List<String> args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Dai.djl.offline=true", "-Dlopper.quiet=true", "-jar", JAR.toString()));
        cmd.addAll(args);
        return run(cmd, SWEEP_TIMEOUT);
    }

    private static Run run(List<String> cmd, Duration timeout) throws IOException, InterruptedException {
        Path log = Files.createTempFile("lopper-slurm-test", ".out");
        try {
            ProcessBuilder pb = new ProcessBuilder(cmd).directory(ROOT.toFile()).redirectErrorStream(true).redirectOutput(log.toFile());
            pb.environment().putAll(ENV);
            Process p = pb.start();
            if (!p.waitFor(timeout.toSeconds(), TimeUnit.SECONDS)) {
                p.destroyForcibly();
                fail(String.join(" ", cmd) + ": still running after " + timeout + ":\n" + Files.readString(log));
            }
            return new Run(p.exitValue(), Files.readString(log, StandardCharsets.UTF_8));
        } finally {
            Files.deleteIfExists(log);
        }
    }
}
