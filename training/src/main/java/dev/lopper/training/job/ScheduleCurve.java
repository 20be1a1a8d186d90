package dev.lopper.training.job;

import dev.lopper.training.loop.LossCurve;

import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Locale;

/**
 * The schedule's curve: loss and parameter count over training steps, as CSV and PNG (JFreeChart, as
 * {@code LossCurve}). One row per prune step (its parameter count, no loss) and one per training step.
 *
 * <pre>{@code
 * ScheduleCurve.writeCsv(rows, out.resolve("schedule.csv"));
 * ScheduleCurve.writePng(rows, out.resolve("schedule.png"), "lora-prune");
 * }</pre>
 */
public final class ScheduleCurve {
    /**
     * @param step the schedule step (1-based)
     * @param trainStep training steps done over the whole run
     * @param params the model's parameters at that point
     * @param ratio achieved fraction of the prunable parameters removed
     * @param trainLoss training loss of that step, or null
     * @param valLoss validation loss, or null
     */
    public record Row(int step, int trainStep, long params, double ratio, Double trainLoss, Double valLoss) {
    }

    private ScheduleCurve() {
    }

    public static void writeCsv(List<Row> rows, Path file) throws IOException {
        Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
        try (PrintWriter w = new PrintWriter(Files.newBufferedWriter(tmp, StandardCharsets.UTF_8))) {
            w.println("step,train_step,params,ratio,train_loss,val_loss");
            for (Row r : rows) {
                w.printf(Locale.ROOT, "%d,%d,%d,%.6f,%s,%s%n", r.step(), r.trainStep(), r.params(), r.ratio(),
                        r.trainLoss() == null ? "" : String.format(Locale.ROOT, "%.6f", r.trainLoss()),
                        r.valLoss() == null ? "" : String.format(Locale.ROOT, "%.6f", r.valLoss()));
            }
        }
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /** Loss (left axis) and parameter count (right axis) over training steps. */
    public static void writePng(List<Row> rows, Path file, String title) throws IOException {
        System.setProperty("java.awt.headless", "true");
        XYSeries train = new XYSeries("training loss");
        XYSeries val = new XYSeries("validation loss");
        XYSeries params = new XYSeries("parameters");
        for (Row r : rows) {
            if (r.trainLoss() != null) {
                train.add(r.trainStep(), r.trainLoss());
            }
            if (r.valLoss() != null) {
                val.add(r.trainStep(), r.valLoss());
            }
            params.add(r.trainStep(), r.params());
        }
        XYSeriesCollection losses = new XYSeriesCollection();
        losses.addSeries(train);
        losses.addSeries(val);
        NumberAxis lossAxis = new NumberAxis("loss (nats / token)");
        lossAxis.setAutoRangeIncludesZero(false);
        XYPlot plot = new XYPlot(losses, new NumberAxis("training step"), lossAxis, new XYLineAndShapeRenderer(true, false));
        NumberAxis paramAxis = new NumberAxis("parameters");
        paramAxis.setAutoRangeIncludesZero(false);
        plot.setRangeAxis(1, paramAxis);
        plot.setDataset(1, new XYSeriesCollection(params));
        plot.mapDatasetToRangeAxis(1, 1);
        plot.setRenderer(1, new XYLineAndShapeRenderer(true, true));
        JFreeChart chart = new JFreeChart(title, JFreeChart.DEFAULT_TITLE_FONT, plot, true);
        Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
        ChartUtils.saveChartAsPNG(tmp.toFile(), chart, 800, 500);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
