package dev.lopper.calibration;

import dev.lopper.model.util.Progress;
import ai.djl.Device;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The streaming engine's statistics against brute force over fully materialized activations. */
class CalibrationEngineTest {
    @TempDir
    Path tmp;

    static long[][] windows(int n, int t, int vocab, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        long[][] w = new long[n][t];
        for (long[] row : w) {
            for (int j = 0; j < t; j++) {
                row[j] = 3 + r.nextInt(vocab - 3);
            }
        }
        return w;
    }

    @Test
    void streamingStatisticsMatchBruteForce() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withLayers(3)); // GQA 4/2, hidden 64, intermediate 96
        long[][] w = windows(5, 12, 300, 7);
        try (ModelDir md = ModelDir.open(dir)) {
            ChannelStatsCollector stats = new ChannelStatsCollector(EnumSet.allOf(Tap.class));
            BlockInfluence block = new BlockInfluence(3);
            ByteArrayOutputStream log = new ByteArrayOutputStream();
            // 24 tokens per chunk = 2 sequences: chunks of 2, 2, 1, so chunking and ordering are exercised
            CalibrationEngine.Options opts = new CalibrationEngine.Options(24,
                    new Progress.Console(new PrintStream(log, true, StandardCharsets.UTF_8), false));
            CalibrationEngine.Result res = new CalibrationEngine(md.config(), md.checkpoint(), Device.cpu())
                    .run(CalibrationData.of(w), List.of(stats, block), opts);
            assertEquals(60, res.tokens());
            String progress = log.toString(StandardCharsets.UTF_8);
            assertTrue(progress.contains("layer 3/3: 60 tokens"), progress);

            BruteForce bf = new BruteForce(md, w);
            for (int layer = 0; layer < 3; layer++) {
                for (Tap tap : Tap.values()) {
                    double[][][] x = bf.acts.get(layer).get(tap);
                    ChannelStats s = stats.get(layer, tap);
                    String what = "layer " + layer + " " + tap;
                    assertEquals(5, s.sequences(), what);
                    assertEquals(60, s.tokens(), what);
                    double[] sq = BruteForce.sumSq(x);
                    assertClose(sq, s.sumOfSquares(), what + " sumSq");
                    double[] scaler = sq.clone();
                    for (int c = 0; c < scaler.length; c++) {
                        scaler[c] /= 5;
                    }
                    assertClose(scaler, s.wandaScalerRow(), what + " scaler_row");
                    double[] var = BruteForce.variance(x);
                    assertClose(var, s.variance(), what + " variance");
                    double[][] flap = BruteForce.flapBiasGpt(x);
                    assertCloseScaled(flap[0], s.mean(), rms(sq, 60), what + " mean");
                    assertClose(flap[1], s.flapFluctuation(), what + " fluc");
                }
                double angular = 0;
                double[][][] in = bf.layerIn.get(layer);
                double[][][] out = bf.layerOut.get(layer);
                for (int i = 0; i < in.length; i++) {
                    for (int t = 0; t < in[i].length; t++) {
                        double dot = 0, a = 0, b = 0;
                        for (int c = 0; c < in[i][t].length; c++) {
                            dot += in[i][t][c] * out[i][t][c];
                            a += in[i][t][c] * in[i][t][c];
                            b += out[i][t][c] * out[i][t][c];
                        }
                        angular += Math.acos(dot / Math.sqrt(a * b)) / Math.PI;
                    }
                }
                assertEquals(angular, block.angular()[layer], 1e-5 * angular, "angular distance layer " + layer);
            }
        }
    }

    static double[] rms(double[] sumSq, long n) {
        double[] out = new double[sumSq.length];
        for (int c = 0; c < out.length; c++) {
            out[c] = Math.sqrt(sumSq[c] / n);
        }
        return out;
    }

    /** Relative 1e-5. */
    static void assertClose(double[] want, double[] got, String what) {
        assertEquals(want.length, got.length, what);
        for (int i = 0; i < want.length; i++) {
            assertTrue(Math.abs(want[i] - got[i]) <= 1e-5 * Math.abs(want[i]) + 1e-12,
                    what + "[" + i + "]: want " + want[i] + " got " + got[i]);
        }
    }

    /** 1e-5 relative to a per-channel scale (a mean near zero has no meaningful relative error). */
    static void assertCloseScaled(double[] want, double[] got, double[] scale, String what) {
        for (int i = 0; i < want.length; i++) {
            assertTrue(Math.abs(want[i] - got[i]) <= 1e-5 * scale[i] + 1e-12,
                    what + "[" + i + "]: want " + want[i] + " got " + got[i]);
        }
    }
}
