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

    public List<Cell> run(Request r) throws IOException {
        Files.createDirectories(r.out());
        List<Cell> cells = new ArrayList<>();
        cells.add(cell(r, null, 0));
        for (String m : r.methods()) {
            for (double ratio : r.ratios()) {
                cells.add(cell(r, m, ratio));
            }
        }
        SweepPlots.writeTable(r.out().resolve("results.md"), cells);
        SweepPlots.writePlots(r.out(), cells);
        return cells;
    }

    private Cell cell(Request r, String method, double ratio) throws IOException {
        String name = cellName(method, ratio);
        Path dir = r.out().resolve(name);
        Path report = dir.resolve(REPORT);
        if (Files.isRegularFile(report)) {
            try {
                EvalReport done = EvalReport.read(report);
                r.progress().message("cell " + name + ": finished earlier, skipped");
                return new Cell(name, method, ratio, done, true);
            } catch (RuntimeException e) {
                r.progress().message("cell " + name + ": unreadable report (" + e.getMessage() + "), redone");
            }
        }
        if (Files.exists(dir)) {
            r.progress().message("cell " + name + ": left half-done by an earlier run, redone");
            AtomicDirectory.deleteTree(dir);
        }
        Files.createDirectories(dir);
        Path model = r.model();
        if (method != null) {
            r.progress().stage("cell " + name + ": prune");
            model = dir.resolve("model");
            PruneRequest.Builder b = PruneRequest.builder(r.model()).criterion(method).ratio(ratio).seed(r.seed())
                    .out(model).progress(r.progress());
            // calibration (and --samples) go to the methods that use it: a sweep may mix both kinds
            if (dev.lopper.pruning.criteria.Criteria.create(method, java.util.Map.of()).needsCalibration()) {
                b.calibration(r.calibration()).samples(r.samples());
            }
            new Pruner().run(b.build());
        }
        r.progress().stage("cell " + name + ": eval");
        EvalReport rep = new Evaluation().run(r.eval().apply(model));
        rep.write(report);
        return new Cell(name, method, ratio, rep, false);
    }
}
