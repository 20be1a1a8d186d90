package dev.lopper.model.util;

import java.io.PrintStream;
import java.util.Locale;

/**
 * Progress of long work on stderr: a redrawn bar with rate and ETA on a terminal, plain lines (about every 10%
 * or 10 s) when output is a file or CI ({@code CI} set), so logs stay readable. Closing prints the final line.
 *
 * <pre>{@code try (Progress p = Progress.start("perplexity", windows, "tok")) { ... p.advance(n); } }</pre>
 */
public final class Progress implements AutoCloseable {
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

    private Progress(String label, long total, String unit, PrintStream out, boolean tty) {
        this.label = label;
        this.total = total;
        this.unit = unit;
        this.out = out;
        this.tty = tty;
    }

    /** @param total units of work (tokens, layers...); {@code unit} names them in the rate */
    public static Progress start(String label, long total, String unit) {
        boolean quiet = Boolean.getBoolean("lopper.quiet");
        boolean tty = System.console() != null && System.getenv("CI") == null;
        return new Progress(label, total, unit, quiet ? new PrintStream(PrintStream.nullOutputStream()) : System.err, tty);
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
