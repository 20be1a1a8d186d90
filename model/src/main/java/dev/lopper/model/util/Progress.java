package dev.lopper.model.util;

import java.io.PrintStream;
import java.util.Locale;

/**
 * Lopper's one progress listener. Long work reports to it and never prints by itself: a pruning job
 * ({@code Pruner}) announces its stages ({@link #stage}) and notes ({@link #message}), the layer-streaming
 * calibration reports tokens per layer ({@link #update}, {@link #layerDone}). Implementations pick what to show:
 * {@link #console} a redrawn bar with tokens/s and ETA on a terminal and plain lines otherwise (or with
 * {@code CI=true}), {@link #lines} plain lines to any sink, {@link #NONE} nothing. {@link #start} gives the counted
 * bar used for simple loops (perplexity).
 *
 * <pre>{@code
 * Progress p = Progress.lines(System.err::println);
 * p.stage("calibration");
 * p.layerDone(0, 32, 131072, 1.5, 1.5);   // "layer 1/32: 131,072 tokens in 1.5 s ..."
 * try (Progress.Counter c = Progress.start("perplexity", tokens, "tok")) { c.advance(512); }
 * }</pre>
 */
public interface Progress {
    Progress NONE = new Progress() { };

    /** A stage of a job begins ("calibration", "scoring", "allocation", "surgery", "save"). */
    default void stage(String name) {
    }

    /** A one-line note (e.g. the settings a job runs with). */
    default void message(String line) {
    }

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
            public void stage(String name) {
                sink.accept(name);
            }

            @Override
            public void message(String line) {
                sink.accept(line);
            }

            @Override
            public void layerDone(int layer, int layers, long tokens, double layerSeconds, double elapsedSeconds) {
                double eta = elapsedSeconds / (layer + 1) * (layers - layer - 1);
                sink.accept(String.format(Locale.ROOT, "layer %d/%d: %,d tokens in %.1f s (%,.0f tok/s), ETA %.0f s", layer + 1,
                        layers, tokens, layerSeconds, tokens / Math.max(1e-9, layerSeconds), eta));
            }
        };
    }

    /**
     * Writes progress to a stream; {@code tty} selects the redrawn bar. Without a terminal, a long layer still
     * gets a plain line every {@link #PLAIN_EVERY_NANOS} (a CI log never goes quiet for minutes).
     */
    final class Console implements Progress {
        static final long PLAIN_EVERY_NANOS = 10_000_000_000L;
        private final PrintStream out;
        private final boolean tty;
        private final long plainEveryNanos;
        private long lastPlainNanos = System.nanoTime();

        public Console(PrintStream out, boolean tty) {
            this(out, tty, PLAIN_EVERY_NANOS);
        }

        /** @param plainEveryNanos without a terminal, the least time between two lines within a layer */
        public Console(PrintStream out, boolean tty, long plainEveryNanos) {
            this.out = out;
            this.tty = tty;
            this.plainEveryNanos = plainEveryNanos;
        }

        @Override
        public void stage(String name) {
            out.println(name);
            out.flush();
        }

        @Override
        public void message(String line) {
            out.println(line);
            out.flush();
        }

        @Override
        public synchronized void update(int layer, int layers, long done, long total, double layerSeconds, double elapsedSeconds) {
            double rate = done / Math.max(1e-9, layerSeconds);
            double eta = eta(layer, layers, done, total, elapsedSeconds);
            if (!tty) {
                long now = System.nanoTime();
                if (now - lastPlainNanos >= plainEveryNanos) {
                    lastPlainNanos = now;
                    out.printf(Locale.ROOT, "layer %d/%d: %.0f%% (%,d of %,d tokens), %,.0f tok/s, ETA %s%n", layer + 1, layers,
                            100.0 * done / Math.max(1, total), done, total, rate, time(eta));
                    out.flush();
                }
                return;
            }
            int width = 24;
            int filled = (int) Math.round(width * (double) done / Math.max(1, total));
            out.printf(Locale.ROOT, "\rlayer %d/%d [%s%s] %5.1f%% %,.0f tok/s ETA %s   ", layer + 1, layers,
                    "#".repeat(filled), " ".repeat(width - filled), 100.0 * done / Math.max(1, total), rate, time(eta));
            out.flush();
        }

        @Override
        public synchronized void layerDone(int layer, int layers, long tokens, double layerSeconds, double elapsedSeconds) {
            lastPlainNanos = System.nanoTime();
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

    /** A counted bar on stderr, see {@link Counter}. */
    static Counter start(String label, long total, String unit) {
        return Counter.start(label, total, unit);
    }

    final class Counter implements AutoCloseable {
        private static final int BAR = 30;

        private final String label;
        private final long total;
        private final String unit;
        private final PrintStream out;
        private final boolean tty;
        private final long startNanos = System.nanoTime();
        private long done;
        private long lastPrintNanos;
        private int lastDecile = -1;
        private boolean closed;

        private Counter(String label, long total, String unit, PrintStream out, boolean tty) {
            this.label = label;
            this.total = total;
            this.unit = unit;
            this.out = out;
            this.tty = tty;
        }

        /** @param total units of work (tokens, layers...); {@code unit} names them in the rate */
        public static Counter start(String label, long total, String unit) {
            boolean quiet = Boolean.getBoolean("lopper.quiet");
            boolean tty = System.console() != null && System.getenv("CI") == null;
            return new Counter(label, total, unit, quiet ? new PrintStream(PrintStream.nullOutputStream()) : System.err, tty);
        }

        public synchronized void advance(long n) {
            done += n;
            long now = System.nanoTime();
            if (tty) {
                if (now - lastPrintNanos > 100_000_000L || done >= total) {
                    lastPrintNanos = now;
                    out.print("\r" + line(now));
                    out.flush();
                }
            } else {
                int decile = total > 0 ? (int) (10 * done / total) : 0;
                if (decile != lastDecile && decile < 10 || now - lastPrintNanos > 10_000_000_000L) {
                    lastDecile = decile;
                    lastPrintNanos = now;
                    out.println(line(now));
                }
            }
        }

        /** Seconds since start. */
        public double elapsedSeconds() {
            return (System.nanoTime() - startNanos) / 1e9;
        }

        /** Units per second so far. */
        public double rate() {
            double s = elapsedSeconds();
            return s > 0 ? done / s : 0;
        }

        private String line(long now) {
            double secs = (now - startNanos) / 1e9;
            double frac = total > 0 ? Math.min(1.0, (double) done / total) : 1.0;
            double rate = secs > 0 ? done / secs : 0;
            String eta = rate > 0 && done < total ? " ETA " + duration((total - done) / rate) : "";
            int filled = (int) Math.round(frac * BAR);
            String bar = tty ? "[" + "#".repeat(filled) + " ".repeat(BAR - filled) + "] " : "";
            return String.format(Locale.ROOT, "%s %s%3.0f%% %d/%d %s, %.1f %s/s, %s%s", label, bar, frac * 100, done, total,
                    unit, rate, unit, duration(secs), eta);
        }

        static String duration(double seconds) {
            long s = Math.round(seconds);
            return s >= 3600 ? String.format(Locale.ROOT, "%dh%02dm", s / 3600, (s % 3600) / 60)
                    : s >= 60 ? String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60) : s + "s";
        }

        @Override
        public synchronized void close() {
            if (closed) {
                return;
            }
            closed = true;
            String last = line(System.nanoTime());
            out.println(tty ? "\r" + last : last);
            out.flush();
        }
    }
}
