package dev.lopper.model;

import ai.djl.engine.Engine;
import ai.djl.pytorch.jni.JniUtils;

/**
 * libtorch's intra-op thread count (the threads one matmul or element-wise op is split over), chosen from
 * measurements (docs/BENCHMARKS.md, "Threads"): libtorch's OpenMP workers spin while they wait for work unless
 * {@code OMP_WAIT_POLICY=PASSIVE} is set before libtorch loads; on a machine whose cores are busy with other
 * processes the spinning workers starve the thread that has work, and two threads ran the fixture's decoding
 * 20x slower than one. With a passive wait policy (bin/lopper and the benchmark scripts set it) the default is
 * one thread per available core; without it, one thread.
 *
 * <pre>{@code
 * Threads.configure(null);   // the measured default
 * Threads.configure(4);      // --threads 4
 * }</pre>
 */
public final class Threads {
    private Threads() {
    }

    /** Applies {@code requested} (null: {@link #defaultCount()}); returns the intra-op thread count in effect. */
    public static int configure(Integer requested) {
        if (requested != null && requested < 1) {
            throw new IllegalArgumentException("--threads " + requested + ": expected a positive thread count");
        }
        return set(requested == null ? defaultCount() : requested);
    }

    /** Cores when OpenMP's workers wait passively, else 1 (spinning workers are the slow case, see above). */
    public static int defaultCount() {
        return passiveWait() ? Runtime.getRuntime().availableProcessors() : 1;
    }

    /** Whether this process's environment tells OpenMP to let idle workers sleep. */
    public static boolean passiveWait() {
        String policy = System.getenv("OMP_WAIT_POLICY");
        return policy != null && policy.trim().equalsIgnoreCase("passive");
    }

    /** Sets libtorch's intra-op threads to {@code n} (0: leave libtorch's own default); returns the count in effect. */
    public static int set(int n) {
        if (n < 0) {
            throw new IllegalArgumentException("threads " + n + ": expected 0 (libtorch's default) or a positive count");
        }
        Engine.getInstance(); // loads libtorch first
        if (n > 0 && JniUtils.getNumThreads() != n) {
            JniUtils.setNumThreads(n);
        }
        return JniUtils.getNumThreads();
    }

    /** The intra-op thread count libtorch uses now. */
    public static int current() {
        Engine.getInstance();
        return JniUtils.getNumThreads();
    }
}
