package dev.lopper.cli;

import dev.lopper.training.job.Recovery;

import dev.lopper.training.loop.Trainer;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Ctrl-C (SIGINT/SIGTERM) during training: asks the watched trainer to checkpoint after its current step and holds
 * the JVM's exit until the job has returned (closed).
 *
 * <pre>{@code
 * try (StopOnSignal stop = new StopOnSignal()) {
 *     Recovery.run(request, listener, stop::watch);
 * }
 * }</pre>
 */
final class StopOnSignal implements AutoCloseable {
    private final CountDownLatch finished = new CountDownLatch(1);
    private volatile Runnable running;
    private final Thread hook = new Thread(() -> {
        Runnable t = running;
        if (t != null) {
            t.run();
            try {
                finished.await(10, TimeUnit.MINUTES);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }, "lopper-recover-stop");

    StopOnSignal() {
        Runtime.getRuntime().addShutdownHook(hook);
    }

    /** The trainer to stop on a signal (every job runs the one {@link Trainer}). */
    void watch(Trainer<?> t) {
        running = t::requestStop;
    }

    @Override
    public void close() {
        finished.countDown();
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException shuttingDown) {
            // the JVM is exiting (Ctrl-C): the hook is running and has seen the checkpoint
        }
    }
}
