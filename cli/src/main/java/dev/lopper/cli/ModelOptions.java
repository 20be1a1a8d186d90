package dev.lopper.cli;

import ai.djl.Device;
import dev.lopper.model.Devices;
import picocli.CommandLine.Option;

/** Options every command that runs a model shares. */
final class ModelOptions {
    @Option(names = "--device", defaultValue = "cpu", description = "cpu or gpu[:N] (needs the CUDA build, see docs/GPU.md). Default: ${DEFAULT-VALUE}.")
    String device;

    @Option(names = "--json", description = "Print the result as JSON.")
    boolean json;

    Device device() {
        return Devices.parse(device);
    }
}
