package dev.lopper.model.testing;

import dev.lopper.model.ModelFormatException;

import java.time.Duration;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeoutException;

/**
 * The property every fuzz test asserts about one input: reading it either succeeds or ends in a clear one-line
 * error (a {@link ModelFormatException} or {@link IllegalArgumentException} whose message names the input's file)
 * within a time limit. Any other exception, an {@link Error} (out of memory, stack overflow), a multi-line or
 * anonymous message, or a hang fails the property with an {@link AssertionError}.
 */
public final class FuzzOutcome {
    /** How an input ended; property tests collect these as statistics (valid vs refused cases). */
    public enum Kind { VALID, REFUSED }

    /** A daemon thread, so that a hung input cannot keep the test JVM alive. */
    private static final ExecutorService RUNNER = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "fuzz-case");
        t.setDaemon(true);
        return t;
    });

    private FuzzOutcome() {
    }

    /** An action on an input; may throw anything. */
    @FunctionalInterface
    public interface Action {
        void run() throws Exception;
    }

    /**
     * Runs {@code action} on one input.
     *
     * @param mustName text every error message must contain (the input file's path)
     */
    public static Kind check(String mustName, Duration limit, Action action) {
        Future<?> f = RUNNER.submit(() -> {
            action.run();
            return null;
        });
        try {
            f.get(limit.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
            return Kind.VALID;
        } catch (TimeoutException e) {
            f.cancel(true);
            throw new AssertionError("no result within " + limit + " (a hang?)");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (!(cause instanceof ModelFormatException) && !(cause instanceof IllegalArgumentException)) {
                throw new AssertionError("expected a one-line error or a result, got " + cause, cause);
            }
            String m = cause.getMessage();
            if (m == null || m.isBlank() || m.contains("\n") || m.contains("\r")) {
                throw new AssertionError("the message is not one line: " + m, cause);
            }
            if (!m.contains(mustName)) {
                throw new AssertionError("the message does not name " + mustName + ": " + m, cause);
            }
            return Kind.REFUSED;
        }
    }
}
