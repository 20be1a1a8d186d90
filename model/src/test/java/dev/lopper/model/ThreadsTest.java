package dev.lopper.model;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** --threads reaches libtorch, bad counts fail with the option's name, and the default follows the wait policy. */
class ThreadsTest {
    @Test
    void setsLibtorchsIntraOpThreadsAndRejectsNonPositiveCounts() {
        int before = Threads.current();
        try {
            assertEquals(1, Threads.configure(1));
            assertEquals(1, Threads.current());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Threads.configure(0));
            assertTrue(e.getMessage().startsWith("--threads 0:"), e.getMessage());
        } finally {
            Threads.set(before);
        }
    }

    @Test
    void defaultIsOnePerCoreOnlyWhenIdleWorkersSleep() {
        // the test JVMs get OMP_WAIT_POLICY=PASSIVE from surefire (pom.xml), as bin/lopper sets it
        int expected = Threads.passiveWait() ? Runtime.getRuntime().availableProcessors() : 1;
        assertEquals(expected, Threads.defaultCount());
    }
}
