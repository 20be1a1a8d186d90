package dev.lopper.eval.backend;

import ai.djl.Device;
import dev.lopper.eval.Evaluator;
import dev.lopper.model.ModelFormatException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

/**
 * Opens the backend that fits what a directory holds: {@code model.onnx} -> ONNX Runtime, {@code model.pt} ->
 * TorchScript (libtorch through DJL), {@code *.safetensors} -> Lopper's forward pass.
 *
 * <pre>{@code
 * try (Evaluator ev = Backends.open(Path.of("work/pruned"), Device.cpu())) { ... }
 * }</pre>
 */
public final class Backends {
    private Backends() {
    }

    /** "lopper", "onnx" or "torchscript" for a model directory; a one-line error naming the directory otherwise. */
    public static String detect(Path dir) {
        if (!Files.isDirectory(dir)) {
            throw ModelFormatException.file(dir, "not a directory; expected a model directory or an ONNX / TorchScript export");
        }
        if (Files.isRegularFile(dir.resolve(OnnxBackend.FILE))) {
            return "onnx";
        }
        if (Files.isRegularFile(dir.resolve("model.pt"))) {
            return "torchscript";
        }
        try (Stream<Path> s = Files.list(dir)) {
            if (s.anyMatch(p -> p.getFileName().toString().endsWith(".safetensors"))) {
                return "lopper";
            }
        } catch (IOException e) {
            throw ModelFormatException.file(dir, "cannot list: " + e.getMessage());
        }
        throw ModelFormatException.file(dir, "holds no model.onnx, model.pt or *.safetensors; expected a Lopper model directory or an export");
    }

    public static Evaluator open(Path dir, Device device) {
        return switch (detect(dir)) {
            case "onnx" -> new OnnxBackend(dir, 0);
            case "torchscript" -> new TorchScriptBackend(dir, device);
            default -> new LopperBackend(dir, device);
        };
    }

    /** The files holding the weights, for the report's size: what {@link #detect} keyed on, plus ONNX external data. */
    public static List<Path> weightFiles(Path dir) {
        try (Stream<Path> s = Files.list(dir)) {
            String kind = detect(dir);
            return s.filter(p -> {
                String n = p.getFileName().toString();
                return switch (kind) {
                    case "onnx" -> n.startsWith("model.onnx");
                    case "torchscript" -> n.equals("model.pt");
                    default -> n.endsWith(".safetensors");
                };
            }).sorted().toList();
        } catch (IOException e) {
            throw ModelFormatException.file(dir, "cannot list: " + e.getMessage());
        }
    }
}
