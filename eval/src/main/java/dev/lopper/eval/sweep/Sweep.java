package dev.lopper.eval.sweep;

import dev.lopper.eval.EvalRequest;
import dev.lopper.eval.Evaluation;
import dev.lopper.eval.report.EvalReport;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.Pruner;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Function;

/**
 * prune -> eval for every (method, ratio) cell, plus the dense model, each cell a directory {@code out/<cell>/}
 * holding the pruned model ({@code model/}) and its {@code report.json}. The report is written last and atomically,
 * so a cell with a readable report is finished and a rerun skips it; a cell directory without one (a run killed
 * half-way) is deleted and redone. Ends with {@code results.md} and PNG plots ({@link SweepPlots}).
 *
 * <pre>{@code
 * List<Sweep.Cell> cells = new Sweep().run(new Sweep.Request(Path.of("fixtures/lopper-tiny"), List.of("flap", "wanda-sp"),
 *         List.of(0.2, 0.5), Path.of("fixtures/text/kjv-train.txt"), 64, 1234, Path.of("work/sweep"),
 *         model -> EvalRequest.builder(model).text(Path.of("fixtures/text/kjv-test.txt")).build(), Progress.NONE));
 * }</pre>
 */
public final class Sweep {
    /** The report file of a cell. */
    public static final String REPORT = "report.json";

    /**
     * @param samples calibration windows, or null for each method's paper default
     * @param eval the evaluation of a model directory (the same for every cell)
     */
    public record Request(Path model, List<String> methods, List<Double> ratios, Path calibration, Integer samples, long seed,
                          Path out, Function<Path, EvalRequest> eval, Progress progress) {
        public Request {
            methods = List.copyOf(methods);
            ratios = List.copyOf(ratios);
            progress = progress == null ? Progress.NONE : progress;
        }
    }

    /** A cell: "dense" (method null, ratio 0) or a method at a ratio; {@code skipped} when a rerun found it finished. */
    public record Cell(String name, String method, double ratio, EvalReport report, boolean skipped) {
    }

    public static String cellName(String method, double ratio) {
        return method == null ? "dense" : String.format(Locale.ROOT, "%s-%.2f", method, ratio);
    }

    /** A cell of the grid before it runs: its place in the sweep (the Slurm array index), name, method and ratio. */
    public record Point(int index, String name, String method, double ratio) {
    }

    /** The sweep's cells in their fixed order: dense first, then every method at every ratio. */
    public static List<Point> points(List<String> methods, List<Double> ratios) {
        List<Point> p = new ArrayList<>();
        p.add(new Point(0, cellName(null, 0), null, 0));
        for (String m : methods) {
            for (double ratio : ratios) {
                p.add(new Point(p.size(), cellName(m, ratio), m, ratio));
            }
        }
        return p;
    }

    /** Every cell in order (finished ones skipped), then {@link #collect}. */
    public List<Cell> run(Request r) throws IOException {
        Files.createDirectories(r.out());
        List<Cell> cells = new ArrayList<>();
        List<Point> points = points(r.methods(), r.ratios());
        for (Point p : points) {
            r.progress().message(String.format(Locale.ROOT, "cell %d/%d: %s", p.index() + 1, points.size(), p.name()));
            cells.add(runCell(r, p));
        }
        collect(r.out(), points);
        return cells;
    }

    /** The finished cells' reports and the names of the unfinished ones. */
    public record Collected(List<Cell> done, List<String> unfinished) {
    }

    /**
     * Reads the cells' reports and writes {@code results.md} (one row per finished cell, in the sweep's order; the
     * unfinished ones named under the table) and the plots, each written beside and renamed into place.
     */
    public static Collected collect(Path out, List<Point> points) throws IOException {
        List<Cell> done = new ArrayList<>();
        List<String> unfinished = new ArrayList<>();
        for (Point p : points) {
            EvalReport rep = finished(out, p.name());
            if (rep == null) {
                unfinished.add(p.name());
            } else {
                done.add(new Cell(p.name(), p.method(), p.ratio(), rep, true));
            }
        }
        SweepPlots.writeTable(out.resolve("results.md"), done, unfinished);
        SweepPlots.writePlots(out, done);
        return new Collected(done, unfinished);
    }

    /** A cell's report if it is there and readable, else null. */
    public static EvalReport finished(Path out, String cell) {
        Path report = out.resolve(cell).resolve(REPORT);
        if (!Files.isRegularFile(report)) {
            return null;
        }
        try {
            return EvalReport.read(report);
        } catch (RuntimeException e) {
            return null;
        }
    }

    /**
     * Runs one cell: skipped when its report is there; otherwise claimed ({@link CellLock}, so no two runs on any
     * hosts write it at once), cleared if an earlier run left it half-done, pruned and evaluated. The local sweep and
     * every Slurm array task run cells through here.
     *
     * @throws IllegalStateException when another live run holds the cell
     */
    public Cell runCell(Request r, Point p) throws IOException {
        String name = p.name();
        Path dir = r.out().resolve(name);
        Path report = dir.resolve(REPORT);
        EvalReport done = finished(r.out(), name);
        if (done != null) {
            r.progress().message("cell " + name + ": finished earlier, skipped");
            return new Cell(name, p.method(), p.ratio(), done, true);
        }
        try (CellLock lock = CellLock.acquire(r.out(), name)) {
            done = finished(r.out(), name); // finished by another run while this one waited for the claim
            if (done != null) {
                r.progress().message("cell " + name + ": finished by another run, skipped");
                return new Cell(name, p.method(), p.ratio(), done, true);
            }
            if (Files.isRegularFile(report)) {
                r.progress().message("cell " + name + ": unreadable report, redone");
            }
            if (Files.exists(dir)) {
                r.progress().message("cell " + name + ": left half-done by an earlier run, redone");
                AtomicDirectory.deleteTree(dir);
            }
            Files.createDirectories(dir);
            Path model = r.model();
            if (p.method() != null) {
                r.progress().stage("cell " + name + ": prune");
                model = dir.resolve("model");
                PruneRequest.Builder b = PruneRequest.builder(r.model()).criterion(p.method()).ratio(p.ratio()).seed(r.seed())
                        .out(model).progress(r.progress());
                // calibration (and --samples) go to the methods that use it: a sweep may mix both kinds
                if (dev.lopper.pruning.criteria.Criteria.create(p.method(), java.util.Map.of()).needsCalibration()) {
                    b.calibration(r.calibration()).samples(r.samples());
                }
                new Pruner().run(b.build());
            }
            r.progress().stage("cell " + name + ": eval");
            EvalReport rep = new Evaluation().run(r.eval().apply(model));
            rep.write(report);
            r.progress().message("cell " + name + ": done");
            return new Cell(name, p.method(), p.ratio(), rep, false);
        }
    }
}
