package dev.lopper.eval.sweep;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Where each cell of a sweep stands: {@code done} (its report is there), {@code running}, {@code pending} or
 * {@code failed} (with a one-line reason), from the cells' files and, for a sweep submitted to Slurm, from
 * {@code squeue} / {@code sacct} where they still know the tasks.
 *
 * <pre>{@code
 * for (SweepStatus.Row r : SweepStatus.of(out, SweepSpec.read(out), Slurm.states(spec))) {
 *     System.out.println(r.cell() + " " + r.state() + " " + r.detail());
 * }
 * }</pre>
 */
public final class SweepStatus {
    private SweepStatus() {
    }

    public enum State { DONE, RUNNING, PENDING, FAILED;

        public String label() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /** One cell: its state and what says so (a job id, a host, the error line). */
    public record Row(int index, String cell, State state, String detail) {
    }

    /**
     * @param slurm each cell's state in its latest Slurm submission ({@link Slurm#states}); empty for a local sweep
     */
    public static List<Row> of(Path out, SweepSpec spec, Map<Integer, Slurm.TaskState> slurm) {
        List<Row> rows = new ArrayList<>();
        for (Sweep.Point p : spec.cells()) {
            rows.add(row(out, spec, p, slurm.get(p.index())));
        }
        return rows;
    }

    private static Row row(Path out, SweepSpec spec, Sweep.Point p, Slurm.TaskState t) {
        String name = p.name();
        if (Sweep.finished(out, name) != null) {
            return new Row(p.index(), name, State.DONE, out.resolve(name).resolve(Sweep.REPORT).toString());
        }
        CellLock.Holder h = CellLock.holder(out, name);
        String error = lastError(out.resolve(name + ".log"));
        if (t != null && t.running()) {
            return new Row(p.index(), name, State.RUNNING, "Slurm job " + t.job() + (h != null ? " on " + h.host() : ""));
        }
        if (t != null && t.queued()) {
            return new Row(p.index(), name, State.PENDING, "Slurm job " + t.job() + " " + t.state()
                    + (t.reason().isEmpty() || t.reason().equals("None") ? "" : " (" + t.reason() + ")"));
        }
        if (h != null && !h.stale()) {
            return new Row(p.index(), name, State.RUNNING, "host " + h.host() + ", pid " + h.pid()
                    + (h.slurmJob().equals("-") ? "" : ", Slurm job " + h.slurmJob()));
        }
        if (t != null) {
            // COMPLETED without a report, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...
            String why = error != null ? error : t.state().equals("COMPLETED") ? "ended without a report" : slurmMessage(out, t.job());
            return new Row(p.index(), name, State.FAILED, "Slurm job " + t.job() + " " + t.state() + (why == null ? "" : ": " + why));
        }
        if (error != null) {
            return new Row(p.index(), name, State.FAILED, error);
        }
        String lastJob = lastJob(spec, p.index());
        String msg = lastJob == null ? null : slurmMessage(out, lastJob);
        if (msg != null) {
            return new Row(p.index(), name, State.FAILED, "Slurm job " + lastJob + ": " + msg);
        }
        if (Files.exists(out.resolve(name)) || Files.exists(out.resolve(name + ".log"))) {
            return new Row(p.index(), name, State.FAILED, "stopped without a report (see " + out.resolve(name + ".log") + ")");
        }
        return new Row(p.index(), name, State.PENDING, lastJob == null ? "not started" : "not started (Slurm job " + lastJob + " is gone)");
    }

    /** The last "error: ..." line a run of the cell printed (Lopper's one-line error), without the prefix. */
    static String lastError(Path log) {
        if (!Files.isRegularFile(log)) {
            return null;
        }
        try {
            List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
            // only the latest attempt counts: lines after its "== ..." header
            String found = null;
            for (String l : lines) {
                if (l.startsWith("== ")) {
                    found = null;
                } else if (l.startsWith("error: ")) {
                    found = l.substring("error: ".length()).strip();
                }
            }
            return found;
        } catch (IOException | java.io.UncheckedIOException e) {
            return null;
        }
    }

    /** Slurm's own line about the task ("*** JOB 12 ON node CANCELLED AT ... ***"), from its output file. */
    static String slurmMessage(Path out, String job) {
        Path f = out.resolve(Slurm.DIR).resolve(job + ".out");
        if (!Files.isRegularFile(f)) {
            return null;
        }
        try {
            return Files.readAllLines(f, StandardCharsets.UTF_8).stream().filter(l -> l.contains("***"))
                    .map(l -> l.replaceFirst("^slurmstepd[^:]*: error: ", "").strip()).reduce((a, b) -> b).orElse(null);
        } catch (IOException | java.io.UncheckedIOException e) {
            return null;
        }
    }

    private static String lastJob(SweepSpec spec, int cell) {
        String job = null;
        for (SweepSpec.Submission s : spec.submissions()) {
            if (s.cells().contains(cell)) {
                job = s.arrayJob() + "_" + cell;
            }
        }
        return job;
    }

    /** "2 done, 1 running, 1 pending, 0 failed". */
    public static String summary(List<Row> rows) {
        StringBuilder s = new StringBuilder();
        for (State st : State.values()) {
            if (s.length() > 0) {
                s.append(", ");
            }
            s.append(rows.stream().filter(r -> r.state() == st).count()).append(' ').append(st.label());
        }
        return s.toString();
    }
}
