package dev.lopper.export;

import java.util.Arrays;
import java.util.stream.Collectors;

/** The formats {@code lopper export} writes. */
public enum ExportFormat {
    /** ONNX graph input_ids + attention_mask -> logits. */
    ONNX("onnx"),
    /** ONNX graph with KV cache (past key/values in, present out) for generation. */
    ONNX_KV("onnx-kv"),
    /** TorchScript archive (torch.jit.load) input_ids -> logits. */
    TORCHSCRIPT("torchscript"),
    /** HF directory (config.json + safetensors + tokenizer files). */
    HF("hf"),
    /** GGUF file for llama.cpp (architecture llama, or deci for per-layer shapes). */
    GGUF("gguf");

    private final String cliName;

    ExportFormat(String cliName) {
        this.cliName = cliName;
    }

    public String cliName() {
        return cliName;
    }

    /** Parses the CLI name ({@code onnx}, {@code onnx-kv}, {@code torchscript}, {@code hf}, {@code gguf}). */
    public static ExportFormat parse(String name) {
        for (ExportFormat f : values()) {
            if (f.cliName.equalsIgnoreCase(name)) {
                return f;
            }
        }
        throw new IllegalArgumentException("--format: '" + name + "' is not a format; expected one of "
                + Arrays.stream(values()).map(ExportFormat::cliName).collect(Collectors.joining(", ")));
    }

    @Override
    public String toString() {
        return cliName;
    }
}
