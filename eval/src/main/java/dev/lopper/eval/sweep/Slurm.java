package dev.lopper.eval.sweep;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

/**
 * A sweep on a Slurm cluster through Slurm's own client ({@code sbatch}, {@code squeue}, {@code sacct}): one array
 * job with one task per unfinished cell (the task's {@code SLURM_ARRAY_TASK_ID} is the cell's index in
 * {@link SweepSpec}) and a collection job after it ({@code --dependency=afterany}) that writes {@code results.md}
 * and the plots. Each task runs {@code lopper sweep --run-cell OUT N} with the same jar, so cells run the one code
 * path ({@link Sweep#runCell}) the local sweep runs. A task's output lands beside its cell, in {@code OUT/<cell>.log};
 * Slurm's own messages for the task (a cancel, a time limit) in {@code OUT/slurm/<job>_<task>.out}.
 *
 * <pre>{@code
 * SweepSpec.Submission s = Slurm.submit(out, spec, List.of(0, 1, 2, 3), List.of(), options,
 *         List.of("/usr/bin/java", "-jar", "/shared/lopper.jar"));
 * Map<Integer, Slurm.TaskState> states = Slurm.states(spec);
 * }</pre>
 */
public final class Slurm {
    /** The directory in OUT with the batch scripts and Slurm's output files. */
    public static final String DIR = "slurm";

    private Slurm() {
    }

    /**
     * What the array job asks of Slurm; null or empty fields are left to the cluster's defaults.
     *
     * @param maxParallel the array's {@code %N} throttle: at most N cells at once
     * @param sbatchArgs anything else, passed to sbatch as given (both jobs), e.g. {@code --account=proj}
     */
    public record Options(String partition, Integer cpusPerTask, String mem, String time, String gres, Integer maxParallel,
                          List<String> sbatchArgs) {
        public Options {
            sbatchArgs = sbatchArgs == null ? List.of() : List.copyOf(sbatchArgs);
        }
    }

    /** A task's state as Slurm reports it ({@code PENDING}, {@code RUNNING}, {@code CANCELLED}, ...). */
    public record TaskState(String job, String state, String reason) {
        public boolean queued() {
            return switch (state) {
                case "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED",
                     "STOPPED", "SIGNALING", "RESIZING" -> true;
                default -> false;
            };
        }

        public boolean running() {
            return state.equals("RUNNING") || state.equals("COMPLETING") || state.equals("STAGE_OUT");
        }
    }

    /**
     * Writes the batch scripts into {@code OUT/slurm/} and submits the array job for {@code cells} and the collection
     * job that waits for it and for {@code alsoAfter} (earlier array jobs still running).
     *
     * @param lopper the command that starts Lopper on a node, e.g. {@code [/usr/bin/java, -jar, /shared/lopper.jar]}
     * @param cellArgs arguments added to every task's {@code --run-cell} (e.g. {@code --threads 4})
     */
    public static SweepSpec.Submission submit(Path out, SweepSpec spec, List<Integer> cells, List<String> alsoAfter, Options o,
                                              List<String> lopper, List<String> cellArgs) throws IOException {
        if (cells.isEmpty()) {
            throw new IllegalArgumentException("no cells to submit");
        }
        Path abs = out.toAbsolutePath().normalize();
        Path dir = abs.resolve(DIR);
        Files.createDirectories(dir);
        Path cellScript = dir.resolve("cell.sbatch");
        Path collectScript = dir.resolve("collect.sbatch");
        writeScript(cellScript, cellScript(abs, spec, lopper, cellArgs));
        writeScript(collectScript, collectScript(abs, lopper));

        List<String> array = new ArrayList<>(List.of("sbatch", "--parsable", "--job-name=lopper-sweep",
                "--array=" + arraySpec(cells) + (o.maxParallel() != null ? "%" + o.maxParallel() : ""),
                "--chdir=" + spec.cwd(), "--output=" + dir.resolve("%A_%a.out"), "--open-mode=append"));
        common(array, o);
        if (o.cpusPerTask() != null) {
            array.add("--cpus-per-task=" + o.cpusPerTask());
        }
        if (o.mem() != null) {
            array.add("--mem=" + o.mem());
        }
        if (o.gres() != null) {
            array.add("--gres=" + o.gres());
        }
        array.addAll(o.sbatchArgs());
        array.add(cellScript.toString());
        String arrayJob = jobId(run(array));
        record(dir, array, arrayJob);

        List<String> after = new ArrayList<>(alsoAfter);
        after.add(arrayJob);
        List<String> collect = new ArrayList<>(List.of("sbatch", "--parsable", "--job-name=lopper-sweep-collect",
                "--dependency=afterany:" + String.join(":", after), "--kill-on-invalid-dep=no",
                "--chdir=" + spec.cwd(), "--output=" + dir.resolve("collect-%j.out")));
        common(collect, o);
        collect.addAll(o.sbatchArgs());
        collect.add(collectScript.toString());
        String collectJob;
        try {
            collectJob = jobId(run(collect));
            record(dir, collect, collectJob);
        } catch (RuntimeException e) {
            // the cells are queued; without the collection job nobody writes results.md: take them back
            try {
                run(List.of("scancel", arrayJob));
            } catch (RuntimeException ignored) {
                // reported below
            }
            throw e;
        }
        return new SweepSpec.Submission(arrayJob, collectJob, cells, Instant.now().toString());
    }

    /** OUT/slurm/sbatch.log: every sbatch command this sweep ran and the job it made. */
    private static void record(Path dir, List<String> cmd, String job) throws IOException {
        Files.writeString(dir.resolve("sbatch.log"), Instant.now() + " job " + job + ": "
                        + cmd.stream().map(Slurm::sh).collect(Collectors.joining(" ")) + "\n",
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
    }

    private static void common(List<String> cmd, Options o) {
        if (o.partition() != null) {
            cmd.add("--partition=" + o.partition());
        }
        if (o.time() != null) {
            cmd.add("--time=" + o.time());
        }
    }

    /** "0-3" or "1,4,7": the array's task ids. */
    static String arraySpec(List<Integer> cells) {
        List<Integer> sorted = cells.stream().sorted().distinct().toList();
        StringBuilder s = new StringBuilder();
        int i = 0;
        while (i < sorted.size()) {
            int j = i;
            while (j + 1 < sorted.size() && sorted.get(j + 1) == sorted.get(j) + 1) {
                j++;
            }
            if (s.length() > 0) {
                s.append(',');
            }
            s.append(sorted.get(i));
            if (j > i) {
                s.append('-').append(sorted.get(j));
            }
            i = j + 1;
        }
        return s.toString();
    }

    static String cellScript(Path out, SweepSpec spec, List<String> lopper, List<String> cellArgs) {
        StringBuilder s = new StringBuilder("#!/bin/bash\n");
        s.append("# Written by lopper sweep --executor slurm: one sweep cell per array task, the cell picked by\n");
        s.append("# SLURM_ARRAY_TASK_ID (its index in sweep.json); its output goes to OUT/<cell>.log (docs/CLUSTER.md).\n");
        s.append("set -u\n");
        s.append("out=").append(sh(out.toString())).append('\n');
        s.append("cells=(").append(spec.cells().stream().map(c -> sh(c.name())).collect(Collectors.joining(" "))).append(")\n");
        s.append("cell=\"${cells[$SLURM_ARRAY_TASK_ID]}\"\n");
        s.append("exec >>\"$out/$cell.log\" 2>&1\n");
        s.append("echo \"== $(date -u +%Y-%m-%dT%H:%M:%SZ) Slurm job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname): cell $cell\"\n");
        s.append(env());
        s.append("exec ").append(command(lopper)).append(" sweep --run-cell \"$out\" \"$SLURM_ARRAY_TASK_ID\"");
        cellArgs.forEach(a -> s.append(' ').append(sh(a)));
        s.append('\n');
        return s.toString();
    }

    static String collectScript(Path out, List<String> lopper) {
        return "#!/bin/bash\n"
                + "# Written by lopper sweep --executor slurm: after the cells, results.md and the plots (docs/CLUSTER.md).\n"
                + "set -u\n" + env()
                + "exec " + command(lopper) + " sweep --collect " + sh(out.toString()) + "\n";
    }

    /** What bin/lopper sets, so a task runs as the launcher would run it. */
    private static String env() {
        return "export MALLOC_MMAP_THRESHOLD_=\"${MALLOC_MMAP_THRESHOLD_:-1048576}\" MALLOC_TRIM_THRESHOLD_=\"${MALLOC_TRIM_THRESHOLD_:-1048576}\"\n"
                + "export OMP_WAIT_POLICY=\"${OMP_WAIT_POLICY:-PASSIVE}\"\n";
    }

    /** The Lopper command; the first word (java) can be replaced on a node with LOPPER_JAVA. */
    private static String command(List<String> lopper) {
        StringBuilder s = new StringBuilder("\"${LOPPER_JAVA:-").append(lopper.get(0).replace("\"", "\\\"")).append("}\"");
        s.append(" ${JAVA_OPTS:-}");
        for (String a : lopper.subList(1, lopper.size())) {
            s.append(' ').append(sh(a));
        }
        return s.toString();
    }

    /** A single-quoted shell word. */
    static String sh(String s) {
        if (s.matches("[A-Za-z0-9_./=:,+@%-]+")) {
            return s;
        }
        return "'" + s.replace("'", "'\\''") + "'";
    }

    private static void writeScript(Path file, String text) throws IOException {
        dev.lopper.model.io.AtomicFile.write(file, tmp -> {
            Files.writeString(tmp, text);
            Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwxr-xr-x"));
        });
    }

    private static String jobId(String parsable) {
        String first = parsable.strip().lines().reduce((a, b) -> b).orElse("");
        String id = first.split(";")[0].strip();
        if (!id.matches("[0-9]+")) {
            throw new IllegalStateException("sbatch --parsable printed '" + first + "'; expected a job id");
        }
        return id;
    }

    /**
     * Each cell's state in its latest submission, as {@code squeue} reports it (finished tasks stay there for the
     * cluster's MinJobAge) or else {@code sacct} (where the cluster keeps accounting). Cells Slurm no longer knows
     * are absent.
     */
    public static Map<Integer, TaskState> states(SweepSpec spec) {
        Map<Integer, TaskState> latest = new HashMap<>();
        for (SweepSpec.Submission s : spec.submissions()) {
            Map<Integer, TaskState> now = query(s.arrayJob());
            for (int c : s.cells()) {
                TaskState t = now.get(c);
                if (t != null) {
                    latest.put(c, t);
                } else {
                    latest.remove(c); // a later submission of the cell that Slurm no longer knows
                }
            }
        }
        return latest;
    }

    /** Array jobs of the spec with tasks still pending or running. */
    public static List<String> activeArrays(SweepSpec spec, Map<Integer, TaskState> states) {
        return states.values().stream().filter(t -> t.queued() || t.running()).map(t -> t.job().split("_")[0]).distinct().toList();
    }

    /** A (non-array) job's state, from squeue or else sacct; null when Slurm no longer knows it. */
    public static String jobState(String job) {
        try {
            String q = run(List.of("squeue", "--states=all", "-h", "-j", job, "-o", "%T")).strip();
            if (!q.isEmpty()) {
                return q.lines().findFirst().orElse("").strip();
            }
        } catch (RuntimeException e) {
            // purged from the controller
        }
        try {
            String a = run(List.of("sacct", "-n", "-P", "-X", "-j", job, "-o", "State")).strip();
            if (!a.isEmpty()) {
                return a.lines().findFirst().orElse("").split(" ")[0];
            }
        } catch (RuntimeException e) {
            // no accounting
        }
        return null;
    }

    private static Map<Integer, TaskState> query(String arrayJob) {
        Map<Integer, TaskState> m = new HashMap<>();
        try {
            String q = run(List.of("squeue", "--states=all", "-h", "-r", "-j", arrayJob, "-o", "%i|%K|%T|%r"));
            for (String line : q.lines().toList()) {
                String[] f = line.strip().split("\\|");
                if (f.length >= 3 && f[1].matches("[0-9]+")) {
                    m.put(Integer.parseInt(f[1]), new TaskState(arrayJob + "_" + f[1], f[2], f.length > 3 ? f[3] : ""));
                }
            }
        } catch (RuntimeException e) {
            // "Invalid job id specified": purged from the controller; sacct may still know it
        }
        try {
            String a = run(List.of("sacct", "-n", "-P", "-X", "-j", arrayJob, "-o", "JobID,State"));
            for (String line : a.lines().toList()) {
                String[] f = line.strip().split("\\|");
                if (f.length >= 2 && f[0].matches("[0-9]+_[0-9]+")) {
                    int task = Integer.parseInt(f[0].substring(f[0].indexOf('_') + 1));
                    // sacct writes "CANCELLED by 0"
                    m.putIfAbsent(task, new TaskState(f[0], f[1].split(" ")[0], ""));
                }
            }
        } catch (RuntimeException e) {
            // no accounting on this cluster
        }
        return m;
    }

    /**
     * Runs a Slurm client command and returns its output.
     *
     * @throws IllegalStateException with one line: the command, its exit code and its first error line
     */
    public static String run(List<String> cmd) {
        Process p;
        try {
            p = new ProcessBuilder(cmd).redirectErrorStream(false).start();
        } catch (IOException e) {
            throw new IllegalStateException(cmd.get(0) + ": cannot run it (" + e.getMessage()
                    + "); expected Slurm's client tools on PATH (a cluster's login node, or scripts/slurm-local)");
        }
        try {
            p.getOutputStream().close();
            byte[][] outErr = new byte[2][];
            Thread t = new Thread(() -> outErr[1] = readAll(p.getErrorStream()));
            t.start();
            outErr[0] = readAll(p.getInputStream());
            if (!p.waitFor(120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IllegalStateException(cmd.get(0) + ": no answer from Slurm in 120 s");
            }
            t.join();
            String out = new String(outErr[0], StandardCharsets.UTF_8);
            String err = new String(outErr[1], StandardCharsets.UTF_8);
            if (p.exitValue() != 0) {
                String line = err.lines().filter(l -> !l.isBlank()).reduce((a, b) -> b).orElse(out.strip());
                throw new IllegalStateException(String.format(Locale.ROOT, "%s exited with %d: %s (command: %s)", cmd.get(0),
                        p.exitValue(), line.strip(), String.join(" ", cmd)));
            }
            return out;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
            throw new IllegalStateException(cmd.get(0) + ": interrupted");
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static byte[] readAll(InputStream in) {
        try (in) {
            return in.readAllBytes();
        } catch (IOException e) {
            return new byte[0];
        }
    }
}
