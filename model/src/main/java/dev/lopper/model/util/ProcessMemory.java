package dev.lopper.model.util;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * This process's memory as the kernel reports it in {@code /proc/self/status}: one reader for run statistics and
 * the memory benchmarks. {@code ProcessMemory.bytes("VmHWM")} is the peak resident set, {@code "RssAnon"} the
 * current anonymous (non-file) part.
 */
public final class ProcessMemory {
    private ProcessMemory() {
    }

    /** The field's value in bytes (the kernel writes kB), or -1 where unavailable (not Linux, no such field). */
    public static long bytes(String field) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith(field + ":")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            return -1;
        }
        return -1;
    }
}
