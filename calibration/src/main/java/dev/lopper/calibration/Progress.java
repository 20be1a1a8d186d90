package dev.lopper.calibration;

import java.io.PrintStream;
import java.util.Locale;

/**
 * Per-layer progress of a calibration pass: a redrawn bar with tokens/s and ETA on a terminal, plain lines
 * (one per finished layer) when output is not a terminal or {@code CI=true}, or nothing.
 */
public interface Progress {
    Progress NONE = new Progress() { };

    /** {@code done} of {@code total} tokens of layer {@code layer} (0-based) of {@code layers} have passed. */
    default void update(int layer, int layers, long done, long total, double layerSeconds, double elapsedSeconds) {
    }

    /** Layer {@code layer} has finished. */
    default void layerDone(int layer, int layers, long tokens, double layerSeconds, double elapsedSeconds) {
    }

    /** A bar on a TTY, plain lines otherwise (or with CI set), on {@code out}; nothing with -Dlopper.quiet=true. */
    static Progress console(PrintStream out) {
        if (Boolean.getBoolean("lopper.quiet")) {
            return NONE;
        }
        boolean tty = System.console() != null && System.getenv("CI") == null;
        return new Console(out, tty);
    }

    /** One plain line per finished layer, handed to {@code sink} (e.g. a criterion's progress consumer). */
    static Progress lines(java.util.function.Consumer<String> sink) {
        return new Progress() {
            @Override
            public void layerDone(int layer, int layers, long tokens, double layerSeconds, double elapsedSeconds) {
                double eta = elapsedSeconds / (layer + 1) * (layers - layer - 1);
                sink.accept(String.format(Locale.ROOT, "layer %d/%d: %,d tokens in %.1f s (%,.0f tok/s), ETA %.0f s", layer + 1,
                        layers, tokens, layerSeconds, tokens / Math.max(1e-9, layerSeconds), eta));
            }
        };
    }

    /** Writes progress to a stream; {@code tty} selects the redrawn bar. */
    record Console(PrintStream out, boolean tty) implements Progress {
        @Override
        public void update(int layer, int layers, long done, long total, double layerSeconds, double elapsedSeconds) {
            if (!tty) {
                return;
            }
            int width = 24;
            int filled = (int) Math.round(width * (double) done / Math.max(1, total));
            double rate = done / Math.max(1e-9, layerSeconds);
            double eta = eta(layer, layers, done, total, elapsedSeconds);
            out.printf(Locale.ROOT, "\rlayer %d/%d [%s%s] %5.1f%% %,.0f tok/s ETA %s   ", layer + 1, layers,
                    "#".repeat(filled), " ".repeat(width - filled), 100.0 * done / Math.max(1, total), rate, time(eta));
            out.flush();
        }

        @Override
        public void layerDone(int layer, int layers, long tokens, double layerSeconds, double elapsedSeconds) {
            double eta = elapsedSeconds / (layer + 1) * (layers - layer - 1);
            out.printf(Locale.ROOT, "%slayer %d/%d: %,d tokens in %.1f s (%,.0f tok/s), ETA %s%n", tty ? "\r" : "",
                    layer + 1, layers, tokens, layerSeconds, tokens / Math.max(1e-9, layerSeconds), time(eta));
            out.flush();
        }

        private static double eta(int layer, int layers, long done, long total, double elapsed) {
            double fraction = (layer + (double) done / Math.max(1, total)) / layers;
            return fraction <= 0 ? 0 : elapsed / fraction * (1 - fraction);
        }

        private static String time(double s) {
            return s >= 3600 ? String.format(Locale.ROOT, "%dh%02dm", (int) (s / 3600), (int) (s % 3600 / 60))
                    : s >= 60 ? String.format(Locale.ROOT, "%dm%02ds", (int) (s / 60), (int) (s % 60))
                    : String.format(Locale.ROOT, "%.0fs", s);
        }
    }
}
