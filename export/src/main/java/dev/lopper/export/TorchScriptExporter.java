package dev.lopper.export;

import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;

import java.nio.file.Path;

public final class TorchScriptExporter {
    public static final String FILE = "model.pt";

    public static void write(ModelConfig config, TensorSource tensors, Path file) {
        throw new UnsupportedOperationException();
    }
}
