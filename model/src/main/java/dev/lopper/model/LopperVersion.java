package dev.lopper.model;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;

/**
 * Lopper's version, one string for every place that records it (CLI {@code --version}, plans, output markers),
 * read from a resource that Maven fills in at build time.
 */
public final class LopperVersion {
    private static final String VERSION = load();

    private LopperVersion() {
    }

    /** The project version, e.g. {@code 0.1.0-SNAPSHOT}. */
    public static String get() {
        return VERSION;
    }

    private static String load() {
        try (InputStream in = LopperVersion.class.getResourceAsStream("/dev/lopper/model/version.properties")) {
            if (in != null) {
                Properties p = new Properties();
                p.load(in);
                String v = p.getProperty("version");
                if (v != null && !v.startsWith("${")) {
                    return v;
                }
            }
        } catch (IOException ignored) {
            // fall through to the unknown version
        }
        return "unknown";
    }
}
