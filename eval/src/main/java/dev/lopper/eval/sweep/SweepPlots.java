package dev.lopper.eval.sweep;

import dev.lopper.eval.mc.McResult;
import dev.lopper.eval.report.EvalReport;
import org.jfree.chart.ChartFactory;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.function.ToDoubleFunction;

/**
 * A sweep's outputs: {@code results.md} (one row per cell) and PNG plots drawn with JFreeChart, headless:
 * {@code ppl-vs-ratio.png}, {@code acc-vs-ratio.png} (the first task's acc) and {@code speed-vs-params.png}
 * (decode tokens/s against parameters). The dense model is each method's ratio-0 point.
 *
 * <pre>{@code
 * SweepPlots.writeTable(out.resolve("results.md"), cells);
 * SweepPlots.writePlots(out, cells);
 * }</pre>
 */
public final class SweepPlots {
    private SweepPlots() {
    }

    public static void writeTable(Path file, List<Sweep.Cell> cells) throws IOException {
        writeTable(file, cells, List.of());
    }

    /** The table of the finished cells, and a line naming the unfinished ones (none: no line). */
    public static void writeTable(Path file, List<Sweep.Cell> cells, List<String> unfinished) throws IOException {
        Set<String> tasks = new LinkedHashSet<>();
        cells.forEach(c -> c.report().tasks().forEach(t -> tasks.add(t.task())));
        StringBuilder s = new StringBuilder("| cell | method | ratio | parameters | file bytes | perplexity |");
        tasks.forEach(t -> s.append(' ').append(t).append(" acc | ").append(t).append(" acc_norm |"));
        s.append(" prefill tok/s | decode tok/s |\n|---|---|---|---|---|---|");
        tasks.forEach(t -> s.append("---|---|"));
        s.append("---|---|\n");
        for (Sweep.Cell c : cells) {
            EvalReport r = c.report();
            s.append(String.format(Locale.ROOT, "| %s | %s | %.2f | %,d | %,d | %s |", c.name(), c.method() == null ? "dense" : c.method(),
                    c.ratio(), r.parameters(), r.fileBytes(), r.perplexity() == null ? "-" : String.format(Locale.ROOT, "%.3f", r.perplexity().perplexity())));
            for (String t : tasks) {
                McResult m = r.task(t);
                s.append(m == null ? " - | - |" : String.format(Locale.ROOT, " %.3f ± %s | %.3f ± %s |", m.acc(), se(m.accStderr()), m.accNorm(), se(m.accNormStderr())));
            }
            s.append(r.speed() == null ? " - | - |" : String.format(Locale.ROOT, " %.0f | %.1f |", r.speed().prefillTokensPerSecond(), r.speed().decodeTokensPerSecond()));
            s.append('\n');
        }
        if (!unfinished.isEmpty()) {
            s.append("\nUnfinished (no report yet): ").append(String.join(", ", unfinished))
                    .append(". `lopper sweep --status DIR` says why.\n");
        }
        dev.lopper.model.io.AtomicFile.write(file, tmp -> Files.writeString(tmp, s.toString()));
    }

    public static void writePlots(Path dir, List<Sweep.Cell> cells) throws IOException {
        System.setProperty("java.awt.headless", "true");
        byRatio(dir.resolve("ppl-vs-ratio.png"), cells, "Perplexity vs. pruning ratio", "perplexity",
                r -> r.perplexity() == null ? Double.NaN : r.perplexity().perplexity());
        byRatio(dir.resolve("acc-vs-ratio.png"), cells, "Accuracy vs. pruning ratio", "acc (first task)",
                r -> r.tasks().isEmpty() ? Double.NaN : r.tasks().get(0).acc());
        XYSeriesCollection data = new XYSeriesCollection();
        for (Map.Entry<String, List<Sweep.Cell>> e : series(cells).entrySet()) {
            XYSeries s = new XYSeries(e.getKey());
            e.getValue().stream().filter(c -> c.report().speed() != null)
                    .forEach(c -> s.add(c.report().parameters(), c.report().speed().decodeTokensPerSecond()));
            data.addSeries(s);
        }
        save(dir.resolve("speed-vs-params.png"), ChartFactory.createScatterPlot("Decode tokens/s vs. parameters", "parameters",
                "decode tokens/s", data, PlotOrientation.VERTICAL, true, false, false));
    }

    /** Per method, the cells by ratio with the dense model as ratio 0. */
    private static Map<String, List<Sweep.Cell>> series(List<Sweep.Cell> cells) {
        Sweep.Cell dense = cells.stream().filter(c -> c.method() == null).findFirst().orElse(null);
        Map<String, List<Sweep.Cell>> m = new LinkedHashMap<>();
        for (Sweep.Cell c : cells) {
            if (c.method() != null) {
                m.computeIfAbsent(c.method(), k -> new ArrayList<>(dense == null ? List.of() : List.of(dense))).add(c);
            }
        }
        if (m.isEmpty() && dense != null) {
            m.put("dense", List.of(dense));
        }
        return m;
    }

    private static void byRatio(Path file, List<Sweep.Cell> cells, String title, String y, ToDoubleFunction<EvalReport> value) throws IOException {
        XYSeriesCollection data = new XYSeriesCollection();
        for (Map.Entry<String, List<Sweep.Cell>> e : series(cells).entrySet()) {
            XYSeries s = new XYSeries(e.getKey());
            for (Sweep.Cell c : e.getValue()) {
                double v = value.applyAsDouble(c.report());
                if (!Double.isNaN(v)) {
                    s.add(c.ratio(), v);
                }
            }
            data.addSeries(s);
        }
        JFreeChart chart = ChartFactory.createXYLineChart(title, "pruning ratio", y, data, PlotOrientation.VERTICAL, true, false, false);
        ((XYPlot) chart.getPlot()).setRenderer(new XYLineAndShapeRenderer(true, true));
        save(file, chart);
    }

    private static void save(Path file, JFreeChart chart) throws IOException {
        dev.lopper.model.io.AtomicFile.write(file, tmp -> ChartUtils.saveChartAsPNG(tmp.toFile(), chart, 800, 500));
    }

    /** A standard error, "n/a" where undefined (one example). */
    private static String se(double v) {
        return Double.isNaN(v) ? "n/a" : String.format(Locale.ROOT, "%.3f", v);
    }
}
