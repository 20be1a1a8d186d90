package dev.lopper.model.config;

import java.util.Arrays;
import java.util.stream.Collectors;

/**
 * The model families Lopper loads. They share one decoder; the family only changes config defaults and which
 * biases exist (Qwen2 has q/k/v biases). SmolLM and TinyLlama are {@code llama} checkpoints.
 */
public enum Family {
    LLAMA("llama", "LlamaForCausalLM"),
    MISTRAL("mistral", "MistralForCausalLM"),
    QWEN2("qwen2", "Qwen2ForCausalLM");

    private final String modelType;
    private final String architecture;

    Family(String modelType, String architecture) {
        this.modelType = modelType;
        this.architecture = architecture;
    }

    /** The {@code model_type} value in config.json. */
    public String modelType() {
        return modelType;
    }

    /** The HF class name in config.json's {@code architectures}. */
    public String architecture() {
        return architecture;
    }

    public static Family fromModelType(String modelType) {
        for (Family f : values()) {
            if (f.modelType.equals(modelType)) {
                return f;
            }
        }
        return null;
    }

    public static String supported() {
        return Arrays.stream(values()).map(Family::modelType).collect(Collectors.joining(", "));
    }
}
