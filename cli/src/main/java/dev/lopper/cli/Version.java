package dev.lopper.cli;

import picocli.CommandLine;

/** Lopper's one version string ({@link dev.lopper.model.LopperVersion}), the same that plans record. */
public final class Version implements CommandLine.IVersionProvider {
    public static String get() {
        return dev.lopper.model.LopperVersion.get();
    }

    @Override
    public String[] getVersion() {
        return new String[] {"lopper " + get()};
    }
}
