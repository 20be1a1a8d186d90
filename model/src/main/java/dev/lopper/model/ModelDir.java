package dev.lopper.model;

import ai.djl.Device;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * An HF model directory opened for use: config, memory-mapped checkpoint and tokenizer. The front door of the
 * {@code model} module: {@code try (ModelDir m = ModelDir.open(path); LlamaModel lm = m.loadModel(Device.cpu())) ...}.
 */
public final class ModelDir implements AutoCloseable {
    private final Path path;
    private final ModelConfig config;
    private final Checkpoint checkpoint;
    private Tokenizer tokenizer;

    private ModelDir(Path path, ModelConfig config, Checkpoint checkpoint) {
        this.path = path;
        this.config = config;
        this.checkpoint = checkpoint;
    }

    /**
     * Opens a directory: parses config.json, validates every safetensors header and checks that the tensors are
     * exactly the ones the config implies, with the implied shapes ({@link WeightCheck}; no weights are read yet).
     */
    public static ModelDir open(Path path) {
        if (!Files.isDirectory(path)) {
            throw ModelFormatException.file(path, Files.exists(path) ? "is a file; expected a model directory (config.json, *.safetensors, tokenizer.json)"
                    : "does not exist; expected a model directory (config.json, *.safetensors, tokenizer.json)");
        }
        ModelConfig config = ModelConfig.load(path);
        Checkpoint raw = Checkpoint.open(path);
        try {
            Checkpoint logical = raw.withLayout(config);
            WeightCheck.check(config, logical, path.resolve("config.json"));
            return new ModelDir(path, config, logical);
        } catch (RuntimeException e) {
            raw.close();
            throw e;
        }
    }

    public Path path() {
        return path;
    }

    public ModelConfig config() {
        return config;
    }

    /** The weights under their logical HF names (a fused Phi-3 checkpoint appears as q/k/v, gate/up). */
    public Checkpoint checkpoint() {
        return checkpoint;
    }

    /** The tokenizer, loaded on first use. */
    public Tokenizer tokenizer() {
        if (tokenizer == null) {
            tokenizer = Tokenizer.load(path);
        }
        return tokenizer;
    }

    public LlamaModel loadModel(Device device) {
        return LlamaModel.load(config, checkpoint, device);
    }

    @Override
    public void close() {
        checkpoint.close();
        if (tokenizer != null) {
            tokenizer.close();
        }
    }
}
