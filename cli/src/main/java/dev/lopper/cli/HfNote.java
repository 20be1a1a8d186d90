package dev.lopper.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.io.Checkpoint;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * After a command wrote an HF directory: one line when stock HF transformers (and vLLM) cannot load it, naming what
 * does (docs/EXPORT.md, "Which runtime loads which model"). Per-layer shapes ({@code lopper_layers}: FLAP, global
 * allocation, LoRAPrune, EfficientLLM) and o_proj/down_proj biases that {@code attention_bias}/{@code mlp_bias}
 * do not declare (FLAP's bias compensation) are Lopper's extensions of the LLaMA config.
 */
final class HfNote {
    private HfNote() {
    }

    /** The note for the HF directory {@code dir}, or null when stock transformers loads it (or it is no HF directory). */
    static String of(Path dir) {
        Path config = dir.resolve("config.json");
        if (!Files.isRegularFile(config)) {
            return null;
        }
        try (java.util.stream.Stream<Path> files = Files.list(dir)) {
            if (files.noneMatch(f -> f.getFileName().toString().endsWith(".safetensors"))) {
                return null; // an ONNX, TorchScript or GGUF export: loaded by its own runtime
            }
        } catch (Exception e) {
            return null;
        }
        try {
            JsonNode c = new ObjectMapper().readTree(config.toFile());
            boolean perLayer = c.has("lopper_layers") && !c.get("lopper_layers").isNull();
            boolean biases = false;
            if (!c.path("attention_bias").asBoolean(false) || !c.path("mlp_bias").asBoolean(false)) {
                Checkpoint ck = Checkpoint.open(dir);
                for (String n : ck.names()) {
                    if ((n.endsWith("o_proj.bias") && !c.path("attention_bias").asBoolean(false))
                            || (n.endsWith("down_proj.bias") && !c.path("mlp_bias").asBoolean(false))) {
                        biases = true;
                        break;
                    }
                }
            }
            if (!perLayer && !biases) {
                return null;
            }
            String what = perLayer && biases ? "per-layer shapes (lopper_layers) and o_proj/down_proj biases"
                    : perLayer ? "per-layer shapes (lopper_layers)" : "o_proj/down_proj biases its config does not declare";
            return "note: " + dir + " has " + what + ": stock HF transformers and vLLM cannot load it; Lopper, and its gguf "
                    + "(llama.cpp), onnx and torchscript exports, do (docs/EXPORT.md, \"Which runtime loads which model\")";
        } catch (Exception | Error e) {
            return null; // a note, never a failure
        }
    }

    static void print(Path dir, PrintWriter err) {
        String note = of(dir);
        if (note != null) {
            err.println(note);
            err.flush();
        }
    }
}
