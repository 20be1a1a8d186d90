package dev.lopper.model;

import ai.djl.ndarray.types.Shape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.io.TensorInfo;
import dev.lopper.model.layer.LayerSpec;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Checks a checkpoint's tensors against what its config implies, from the safetensors headers alone (no weight is
 * read): every tensor the config implies exists with the implied shape, and no layer past
 * {@code num_hidden_layers} holds tensors. {@link ModelDir#open} runs it, so every command refuses a model whose
 * weights disagree with its config before it allocates anything, rather than failing deep inside libtorch (a
 * reshape error) or, worse, accepting it ({@code inspect}, {@code export --format hf}).
 */
public final class WeightCheck {
    private WeightCheck() {
    }

    /**
     * @param configFile the config.json the config was read from (named in errors)
     * @param checkpoint the checkpoint under its logical names ({@link Checkpoint#withLayout})
     */
    public static void check(ModelConfig config, Checkpoint checkpoint, Path configFile) {
        int present = layersPresent(checkpoint);
        if (present > config.numLayers()) {
            String example = checkpoint.names().stream().filter(n -> WeightNames.layerOf(n) >= config.numLayers())
                    .findFirst().orElse("?");
            throw ModelFormatException.field(configFile, "num_hidden_layers", config.numLayers(), "at least "
                    + Math.min(present, Integer.MAX_VALUE) + ": " + checkpoint.source() + " holds tensor '" + example + "'");
        }
        if (present < config.numLayers()) {
            // a config claiming more layers than the checkpoint has (2^31-1 of them, say) is reported as such, not
            // as the first missing tensor of layer `present`
            throw ModelFormatException.field(configFile, "num_hidden_layers", config.numLayers(), present + " (" + checkpoint.source()
                    + " holds tensors of " + (present == 0 ? "no decoder layer" : "layers 0.." + (present - 1)) + ")");
        }
        for (Map.Entry<String, long[]> e : expected(config, checkpoint).entrySet()) {
            String name = e.getKey();
            Shape want = new Shape(e.getValue());
            if (!checkpoint.has(name)) {
                throw ModelFormatException.file(checkpoint.source(), "tensor '" + name + "' is missing (" + configFile
                        + " implies shape " + want + ")");
            }
            TensorInfo info = checkpoint.info(name);
            if (!info.shape().equals(want)) {
                throw ModelFormatException.file(info.file(), "tensor '" + name + "' has shape " + info.shape() + ", but "
                        + configFile + " implies " + want);
            }
        }
    }

    /** Every tensor the config implies, name -> shape, in checkpoint order. */
    static Map<String, long[]> expected(ModelConfig config, Checkpoint checkpoint) {
        long vocab = config.vocabSize();
        long hidden = config.hiddenSize();
        Map<String, long[]> out = new LinkedHashMap<>();
        out.put(WeightNames.EMBED, new long[] {vocab, hidden});
        for (int i = 0; i < config.numLayers(); i++) {
            LayerSpec spec = LayerSpec.of(config, i);
            spec.params().forEach((p, shape) -> out.put(spec.tensorName(p), shape));
        }
        out.put(WeightNames.FINAL_NORM, new long[] {hidden});
        // a tied model may still store lm_head (LlamaModel then reads it): check it when it is there
        if (!config.tieWordEmbeddings() || checkpoint.has(WeightNames.LM_HEAD)) {
            out.put(WeightNames.LM_HEAD, new long[] {vocab, hidden});
        }
        return out;
    }

    /** 1 + the highest layer index among the checkpoint's tensor names (0 when none is per-layer). */
    private static int layersPresent(Checkpoint checkpoint) {
        long max = -1;
        for (String n : checkpoint.names()) {
            max = Math.max(max, WeightNames.layerOf(n));
        }
        return (int) Math.min(Integer.MAX_VALUE, max + 1);
    }
}
