package dev.lopper.training.loop;

import org.jfree.chart.ChartFactory;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Locale;

/**
 * A run's loss curve: {@code loss.csv} (step, train_loss, val_loss, lr; val_loss empty where not validated) and
 * {@code loss.png} (training and validation loss against step, drawn with JFreeChart, headless). Both files are
 * written under a temporary name and moved into place.
 *
 * <pre>{@code
 * LossCurve.writeCsv(result.history(), out.resolve("loss.csv"));
 * LossCurve.writePng(result.history(), out.resolve("loss.png"), "lopper recover");
 * }</pre>
 */
public final class LossCurve {
    private LossCurve() {
    }

    public static void writeCsv(List<Trainer.Point> history, Path file) throws IOException {
        Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
        try (Writer w = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8)) {
            w.write("step,train_loss,val_loss,lr\n");
            for (Trainer.Point p : history) {
                w.write(String.format(Locale.ROOT, "%d,%s,%s,%.6g%n", p.step(),
                        p.trainLoss() == null ? "" : String.format(Locale.ROOT, "%.6f", p.trainLoss()),
                        p.valLoss() == null ? "" : String.format(Locale.ROOT, "%.6f", p.valLoss()), p.lr()));
            }
        }
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    public static void writePng(List<Trainer.Point> history, Path file, String title) throws IOException {
        System.setProperty("java.awt.headless", "true"); // no display needed (servers, CI)
        XYSeries train = new XYSeries("training loss");
        XYSeries val = new XYSeries("validation loss");
        for (Trainer.Point p : history) {
            if (p.trainLoss() != null) {
                train.add(p.step(), p.trainLoss());
            }
            if (p.valLoss() != null) {
                val.add(p.step(), p.valLoss());
            }
        }
        XYSeriesCollection data = new XYSeriesCollection();
        data.addSeries(train);
        data.addSeries(val);
        JFreeChart chart = ChartFactory.createXYLineChart(title, "step", "loss (nats / token)", data, PlotOrientation.VERTICAL,
                true, false, false);
        chart.getXYPlot().getRangeAxis().setAutoRange(true);
        ((org.jfree.chart.axis.NumberAxis) chart.getXYPlot().getRangeAxis()).setAutoRangeIncludesZero(false);
        Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
        ChartUtils.saveChartAsPNG(tmp.toFile(), chart, 800, 500);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /** {@code size.csv} (step, params) and {@code size.png}: the model's parameter count over the steps of a run that cuts. */
    public static void writeSize(List<Trainer.Point> history, Path csv, Path png, String title) throws IOException {
        Path tmp = csv.resolveSibling("." + csv.getFileName() + ".tmp");
        try (Writer w = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8)) {
            w.write("step,params\n");
            for (Trainer.Point p : history) {
                w.write(p.step() + "," + p.params() + "\n");
            }
        }
        Files.move(tmp, csv, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        if (png == null) {
            return;
        }
        System.setProperty("java.awt.headless", "true");
        XYSeries size = new XYSeries("parameters");
        history.forEach(p -> size.add(p.step(), p.params()));
        JFreeChart chart = ChartFactory.createXYLineChart(title, "step", "parameters", new XYSeriesCollection(size),
                PlotOrientation.VERTICAL, true, false, false);
        Path t = png.resolveSibling("." + png.getFileName() + ".tmp");
        ChartUtils.saveChartAsPNG(t.toFile(), chart, 800, 500);
        Files.move(t, png, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
