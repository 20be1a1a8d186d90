package dev.lopper.training.lora;

import dev.lopper.training.loop.F32Tensors;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.OutputGuard;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * Adapters in PEFT's layout, so {@code PeftModel.from_pretrained(model, dir)} loads them: {@code adapter_config.json}
 * (peft_type LORA, task_type CAUSAL_LM, r, lora_alpha, lora_dropout, target_modules) and
 * {@code adapter_model.safetensors} with {@code base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight} [r, in]
 * and {@code ...lora_B.weight} [out, r] (fp32). Phi-3's adapters sit on its fused {@code qkv_proj} / {@code gate_up_proj}.
 *
 * <pre>{@code
 * PeftIo.save(lora, Path.of("work/adapter"), "work/pruned");
 * try (LoraAdapters back = PeftIo.load(Path.of("work/adapter"), model.config(), Device.cpu())) { ... }
 * }</pre>
 */
public final class PeftIo {
    public static final String CONFIG = "adapter_config.json";
    public static final String WEIGHTS = "adapter_model.safetensors";
    private static final ObjectMapper JSON = new ObjectMapper();

    private PeftIo() {
    }

    /** Writes the adapter directory atomically. */
    public static void save(LoraAdapters lora, Path dir, String baseModel) throws IOException {
        Path tmp = AtomicDirectory.createTemp(dir);
        try {
            LoraConfig c = lora.config();
            ObjectNode json = JSON.createObjectNode();
            json.put("peft_type", "LORA").put("task_type", "CAUSAL_LM").put("r", c.rank()).put("lora_alpha", c.alpha())
                    .put("lora_dropout", c.dropout()).put("bias", "none").put("fan_in_fan_out", false)
                    .put("inference_mode", true).put("init_lora_weights", true).put("use_rslora", false)
                    .put("base_model_name_or_path", baseModel);
            LoraModule.targeted(lora.model().family(), c).forEach(m -> json.withArray("target_modules").add(m.name()));
            JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.resolve(CONFIG).toFile(), json);
            F32Tensors.write(tmp.resolve(WEIGHTS), lora.tensors(), Map.of("format", "pt"));
            OutputGuard.writeMarker(tmp, "adapter");
            AtomicDirectory.replace(tmp, dir);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
    }

    /** Reads an adapter directory for a model with config {@code model}; shapes are checked layer by layer. */
    public static LoraAdapters load(Path dir, ModelConfig model, Device device) {
        Path configFile = dir.resolve(CONFIG);
        if (!Files.isRegularFile(configFile)) {
            throw ModelFormatException.file(dir, "has no " + CONFIG + "; expected a PEFT adapter directory");
        }
        JsonNode json;
        try {
            json = JSON.readTree(configFile.toFile());
        } catch (IOException e) {
            throw ModelFormatException.file(configFile, "not valid JSON: " + e.getMessage());
        }
        if (!"LORA".equals(json.path("peft_type").asText())) {
            throw ModelFormatException.field(configFile, "peft_type", json.path("peft_type").toString(), "\"LORA\"");
        }
        Set<String> targets = new LinkedHashSet<>();
        for (JsonNode t : json.path("target_modules")) {
            LoraModule.of(model.family()).stream().filter(m -> m.name().equals(t.asText()))
                    .forEach(m -> m.parts().forEach(p -> targets.add(LoraModule.logicalName(p))));
        }
        if (targets.isEmpty()) {
            throw ModelFormatException.field(configFile, "target_modules", json.path("target_modules").toString(),
                    "module names of this " + model.family() + " model's projections");
        }
        LoraConfig c = new LoraConfig(json.path("r").asInt(), json.path("lora_alpha").asDouble(), json.path("lora_dropout").asDouble(0), targets);
        Map<String, F32Tensors.Loaded> tensors = F32Tensors.read(dir.resolve(WEIGHTS));
        return LoraAdapters.build(model, c, device, (layer, module, shapeA, shapeB, m) -> {
            String prefix = module.peftPrefix(layer);
            return new NDArray[] {tensor(tensors, prefix + ".lora_A.weight", shapeA, m, dir), tensor(tensors, prefix + ".lora_B.weight", shapeB, m, dir)};
        });
    }

    private static NDArray tensor(Map<String, F32Tensors.Loaded> tensors, String name, Shape shape, ai.djl.ndarray.NDManager m, Path dir) {
        F32Tensors.Loaded t = tensors.get(name);
        if (t == null) {
            throw ModelFormatException.file(dir.resolve(WEIGHTS), "tensor '" + name + "' is missing (the model implies shape " + shape + ")");
        }
        if (!new Shape(t.shape()).equals(shape)) {
            throw ModelFormatException.file(dir.resolve(WEIGHTS), "tensor '" + name + "' has shape " + new Shape(t.shape())
                    + ", but the model implies " + shape);
        }
        return F32Tensors.owned(m, t.data(), shape);
    }
}
