package dev.lopper.model.testing;

/**
 * What tests measured (max differences, counts), printed only with {@code -Dlopper.test.verbose=true}, so the
 * default test log stays clean while the numbers behind docs/TESTING.md remain one flag away:
 * {@code mvn -B -ntp verify -Dlopper.test.verbose=true}.
 */
public final class TestLog {
    private TestLog() {
    }

    /** {@link java.io.PrintStream#printf} on stdout when verbose. */
    public static void printf(String format, Object... args) {
        if (Boolean.getBoolean("lopper.test.verbose")) {
            System.out.printf(java.util.Locale.ROOT, format, args);
        }
    }
}
