package dev.lopper.eval.report;

import java.nio.file.Files;
import java.nio.file.Path;

/** The machine a report was made on: OS, CPU model and cores, Java, and where the backend computed. */
public record Machine(String os, String cpu, int cores, String java, String device) {
    public static Machine current(String device) {
        return new Machine(System.getProperty("os.name") + " " + System.getProperty("os.arch"), cpuModel(),
                Runtime.getRuntime().availableProcessors(), System.getProperty("java.version"), device);
    }

    private static String cpuModel() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("model name")) {
                    return line.substring(line.indexOf(':') + 1).strip();
                }
            }
        } catch (Exception e) {
            // not Linux
        }
        return "unknown";
    }
}
