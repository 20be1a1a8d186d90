package dev.lopper.training.job;

import dev.lopper.model.io.AtomicFile;
import dev.lopper.training.loop.Trainer;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;

/**
 * The one curve of a training job, {@code curve.csv} and {@code curve.png} in its job folder ({@link JobDir}) and
 * beside its final model: one row per optimizer step ({@link Trainer.Point}): {@code step, train_loss, val_loss, lr,
 * params}, then the method's own columns in name order (a schedule's {@code prune_step} and {@code ratio},
 * Compresso's {@code expected_sparsity}, {@code lagrangian}, ...). The PNG draws both losses over the steps, and the
 * parameter count on a second axis when the model shrinks during the run.
 *
 * <pre>{@code
 * Curve.write(result.history(), job.dir(), "lopper recover tiny");
 * }</pre>
 */
public final class Curve {
    public static final String CSV = "curve.csv";
    public static final String PNG = "curve.png";

    private Curve() {
    }

    /** curve.csv and (unless {@code title} is null: no PNG while the JVM shuts down on Ctrl-C) curve.png in {@code dir}. */
    public static void write(List<Trainer.Point> history, Path dir, String title) throws IOException {
        writeCsv(history, dir.resolve(CSV));
        if (title != null) {
            writePng(history, dir.resolve(PNG), title);
        }
    }

    public static void writeCsv(List<Trainer.Point> history, Path file) throws IOException {
        TreeSet<String> metrics = new TreeSet<>();
        history.forEach(p -> metrics.addAll(p.metrics().keySet()));
        StringBuilder csv = new StringBuilder("step,train_loss,val_loss,lr,params");
        metrics.forEach(m -> csv.append(',').append(m));
        csv.append('\n');
        for (Trainer.Point p : history) {
            // a row without training (a validation, a prune step) has no rate
            String lr = p.trainLoss() == null ? "" : String.format(Locale.ROOT, "%.6g", p.lr());
            csv.append(String.format(Locale.ROOT, "%d,%s,%s,%s,%d", p.step(), num(p.trainLoss()), num(p.valLoss()), lr, p.params()));
            Map<String, Double> m = p.metrics();
            metrics.forEach(k -> csv.append(',').append(m.containsKey(k) ? String.format(Locale.ROOT, "%.6g", m.get(k)) : ""));
            csv.append('\n');
        }
        AtomicFile.writeString(file, csv.toString());
    }

    private static String num(Double v) {
        return v == null ? "" : String.format(Locale.ROOT, "%.6f", v);
    }

    /** Losses over the steps (left axis) and, when it changes, the parameter count (right axis). */
    public static void writePng(List<Trainer.Point> history, Path file, String title) throws IOException {
        System.setProperty("java.awt.headless", "true"); // no display needed (servers, CI)
        XYSeries train = new XYSeries("training loss");
        XYSeries val = new XYSeries("validation loss");
        XYSeries params = new XYSeries("parameters");
        for (Trainer.Point p : history) {
            if (p.trainLoss() != null) {
                train.add(p.step(), p.trainLoss());
            }
            if (p.valLoss() != null) {
                val.add(p.step(), p.valLoss());
            }
            params.add(p.step(), p.params());
        }
        XYSeriesCollection losses = new XYSeriesCollection();
        losses.addSeries(train);
        losses.addSeries(val);
        NumberAxis lossAxis = new NumberAxis("loss (nats / token)");
        lossAxis.setAutoRangeIncludesZero(false);
        XYPlot plot = new XYPlot(losses, new NumberAxis("training step"), lossAxis, new XYLineAndShapeRenderer(true, false));
        if (params.getItemCount() > 0 && params.getMinY() != params.getMaxY()) {
            NumberAxis paramAxis = new NumberAxis("parameters");
            paramAxis.setAutoRangeIncludesZero(false);
            plot.setRangeAxis(1, paramAxis);
            plot.setDataset(1, new XYSeriesCollection(params));
            plot.mapDatasetToRangeAxis(1, 1);
            plot.setRenderer(1, new XYLineAndShapeRenderer(true, false));
        }
        JFreeChart chart = new JFreeChart(title, JFreeChart.DEFAULT_TITLE_FONT, plot, true);
        AtomicFile.write(file, tmp -> ChartUtils.saveChartAsPNG(tmp.toFile(), chart, 800, 500));
    }
}
