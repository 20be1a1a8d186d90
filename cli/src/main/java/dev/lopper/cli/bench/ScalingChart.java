package dev.lopper.cli.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.jfree.chart.ChartFactory;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.Graphics2D;
import java.awt.geom.Rectangle2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.ToDoubleFunction;

/**
 * Draws the scaling curves of {@link ScaleBenchmark} reports as one PNG of four panels: time and peak RSS against
 * model size (reports whose name starts with {@code size-}) and against calibration tokens ({@code tokens-}),
 * one line per pruning method. Usage: {@code ScalingChart OUT.png REPORT.json...}.
 */
public final class ScalingChart {
    private ScalingChart() {
    }

    public static void main(String[] args) throws IOException {
        ObjectMapper om = new ObjectMapper();
        List<JsonNode> size = new ArrayList<>();
        List<JsonNode> tokens = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            JsonNode r = om.readTree(Path.of(args[i]).toFile());
            String name = Path.of(args[i]).getFileName().toString();
            (name.startsWith("tokens-") ? tokens : size).add(r);
        }
        ToDoubleFunction<JsonNode> params = r -> r.get("parameters").asDouble() / 1e9;
        ToDoubleFunction<JsonNode> toks = r -> r.get("tokens").asDouble();
        ToDoubleFunction<JsonNode> seconds = r -> r.get("seconds").asDouble();
        ToDoubleFunction<JsonNode> peak = r -> r.get("peak_rss_bytes").asDouble() / (1L << 30);
        JFreeChart[] charts = {
            chart("Time vs model size", "parameters (billions)", "seconds", size, params, seconds),
            chart("Peak RSS vs model size", "parameters (billions)", "peak RSS (GiB, VmHWM)", size, params, peak),
            chart("Time vs calibration tokens", "calibration tokens", "seconds", tokens, toks, seconds),
            chart("Peak RSS vs calibration tokens", "calibration tokens", "peak RSS (GiB, VmHWM)", tokens, toks, peak)};
        int w = 600;
        int h = 420;
        BufferedImage img = new BufferedImage(2 * w, 2 * h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, 2 * w, 2 * h);
        for (int i = 0; i < charts.length; i++) {
            charts[i].draw(g, new Rectangle2D.Double((i % 2) * w, (i / 2) * h, w, h));
        }
        g.dispose();
        ImageIO.write(img, "png", Path.of(args[0]).toFile());
        System.out.println("wrote " + args[0]);
    }

    private static JFreeChart chart(String title, String x, String y, List<JsonNode> reports, ToDoubleFunction<JsonNode> fx,
                                    ToDoubleFunction<JsonNode> fy) {
        Map<String, XYSeries> byMethod = new LinkedHashMap<>();
        for (JsonNode r : reports) {
            String method = r.get("method").asText();
            byMethod.computeIfAbsent(method, m -> new XYSeries(m, true)).add(fx.applyAsDouble(r), fy.applyAsDouble(r));
        }
        XYSeriesCollection data = new XYSeriesCollection();
        byMethod.values().forEach(data::addSeries);
        JFreeChart c = ChartFactory.createXYLineChart(title, x, y, data, PlotOrientation.VERTICAL, true, false, false);
        XYPlot plot = c.getXYPlot();
        plot.setRenderer(new XYLineAndShapeRenderer(true, true));
        plot.setBackgroundPaint(Color.WHITE);
        plot.setRangeGridlinePaint(Color.LIGHT_GRAY);
        plot.setDomainGridlinePaint(Color.LIGHT_GRAY);
        return c;
    }
}
