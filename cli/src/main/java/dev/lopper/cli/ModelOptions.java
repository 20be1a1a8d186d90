package dev.lopper.cli;

import ai.djl.Device;
import dev.lopper.model.Devices;
import dev.lopper.model.Threads;
import picocli.CommandLine.Option;

/** Options every command that runs a model shares. */
final class ModelOptions {
    @Option(names = "--device", defaultValue = "cpu", description = "cpu or gpu[:N] (needs the CUDA build, see docs/GPU.md). Default: ${DEFAULT-VALUE}.")
    String device;

    @Option(names = "--json", description = "Print the result as JSON.")
    boolean json;

    @Option(names = "--threads", description = "libtorch intra-op threads. Default: one per core when OMP_WAIT_POLICY=PASSIVE "
            + "(bin/lopper sets it), else 1 (docs/BENCHMARKS.md, \"Threads\").")
    Integer threads;

    /** The device; also applies {@code --threads} (every command that runs a model asks for its device first). */
    Device device() {
        Threads.configure(threads);
        return Devices.parse(device);
    }
}
