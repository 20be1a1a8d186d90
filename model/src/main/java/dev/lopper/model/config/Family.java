package dev.lopper.model.config;

import java.util.Arrays;
import java.util.stream.Collectors;

/**
 * The model families Lopper loads. They share one layer description ({@code LayerSpec}); a family changes config
 * defaults, which biases exist (Qwen2 has q/k/v biases), whether q and k get a per-head RMSNorm (Qwen3) and how
 * weights are laid out on disk (Phi-3 fuses q/k/v and gate/up). SmolLM and TinyLlama are {@code llama} checkpoints.
 */
public enum Family {
    LLAMA("llama", "LlamaForCausalLM", false, false),
    MISTRAL("mistral", "MistralForCausalLM", false, false),
    QWEN2("qwen2", "Qwen2ForCausalLM", false, false),
    /** RMSNorm over head_dim on q and k ({@code q_norm}, {@code k_norm}) before RoPE. */
    QWEN3("qwen3", "Qwen3ForCausalLM", true, false),
    /** Fused {@code qkv_proj} and {@code gate_up_proj} on disk ({@code io.FusedLayout}). */
    PHI3("phi3", "Phi3ForCausalLM", false, true);

    private final String modelType;
    private final String architecture;
    private final boolean qkNorm;
    private final boolean fused;

    Family(String modelType, String architecture, boolean qkNorm, boolean fused) {
        this.modelType = modelType;
        this.architecture = architecture;
        this.qkNorm = qkNorm;
        this.fused = fused;
    }

    /** Whether q and k are RMS-normalized per head (weights [head_dim]) after the projection, before RoPE. */
    public boolean hasQkNorm() {
        return qkNorm;
    }

    /** Whether checkpoints store q/k/v as one {@code qkv_proj} and gate/up as one {@code gate_up_proj}. */
    public boolean fusedProjections() {
        return fused;
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
