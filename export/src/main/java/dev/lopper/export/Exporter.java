package dev.lopper.export;

import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.io.TensorSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The front door of the export module: writes a model in one {@link ExportFormat} into a directory, atomically
 * (everything is written under a temporary name beside the target and moved into place only when complete, so a
 * failed export leaves any previous directory untouched).
 */
public final class Exporter {
    private Exporter() {
    }

    /** One file written and its size in bytes. */
    public record WrittenFile(Path path, long bytes) {
    }

    /** What an export wrote. */
    public record Result(ExportFormat format, Path dir, List<WrittenFile> files) {
        public long totalBytes() {
            return files.stream().mapToLong(WrittenFile::bytes).sum();
        }
    }

    /** Exports the model in directory {@code modelDir}. */
    public static Result export(Path modelDir, ExportFormat format, Path out) throws IOException {
        try (ModelDir md = ModelDir.open(modelDir)) {
            return export(md.config(), md.checkpoint(), modelDir, format, out, false);
        }
    }

    /**
     * Exports {@code config} + {@code tensors}.
     *
     * @param sideFilesFrom a model directory whose tokenizer/generation files are copied along, or null
     * @param forceExternalData ONNX only: put weights in model.onnx.data even below the 2 GB limit
     */
    public static Result export(ModelConfig config, TensorSource tensors, Path sideFilesFrom, ExportFormat format,
                                Path out, boolean forceExternalData) throws IOException {
        return export(config, tensors, sideFilesFrom, format, out, forceExternalData, ExportDtype.F32);
    }

    /**
     * As above, with weight matrices stored as {@code dtype} (ONNX: f32, f16, bf16; GGUF: also q8_0; TorchScript and
     * HF: f32 only, HF keeps the source dtype).
     */
    public static Result export(ModelConfig config, TensorSource tensors, Path sideFilesFrom, ExportFormat format,
                                Path out, boolean forceExternalData, ExportDtype dtype) throws IOException {
        boolean dtypeOk = dtype == ExportDtype.F32 || format == ExportFormat.GGUF
                || (dtype != ExportDtype.Q8_0 && (format == ExportFormat.ONNX || format == ExportFormat.ONNX_KV));
        if (!dtypeOk) {
            throw new IllegalArgumentException("--dtype " + dtype + " is not available for --format " + format
                    + "; expected f32 (onnx/onnx-kv: f32, f16, bf16; gguf: f32, f16, bf16, q8_0)");
        }
        Path target = out.toAbsolutePath().normalize();
        OutputGuard.checkNotOverlapping(target, "--out", sideFilesFrom);
        if (Files.exists(target) && !Files.isDirectory(target)) {
            throw new IllegalArgumentException("--out " + out + ": is a file; expected a directory to write into");
        }
        if (format == ExportFormat.HF) {
            // ModelWriter already builds the directory beside the target and moves it into place; each tensor keeps
            // the dtype it was stored in (a BF16 model stays BF16)
            ModelWriter.save(target, config, tensors, null, sideFilesFrom, ModelWriter.DEFAULT_MAX_SHARD_BYTES,
                    Map.of("format", "pt"));
            return new Result(format, target, listFiles(target));
        }
        Path tmp = AtomicDirectory.createTemp(target);
        try {
            switch (format) {
                case ONNX, ONNX_KV -> OnnxExporter.write(config, tensors, tmp, format == ExportFormat.ONNX_KV, forceExternalData, dtype);
                case TORCHSCRIPT -> TorchScriptExporter.write(config, tensors, tmp.resolve(TorchScriptExporter.FILE));
                case GGUF -> GgufExporter.write(config, tensors, sideFilesFrom == null ? null : sideFilesFrom.resolve("tokenizer.json"),
                        dtype, tmp.resolve(GgufExporter.FILE));
                default -> throw new IllegalStateException(format.toString());
            }
            Files.writeString(tmp.resolve("config.json"), config.toJson().toPrettyString());
            if (sideFilesFrom != null) {
                for (String f : ModelWriter.SIDE_FILES) {
                    if (Files.exists(sideFilesFrom.resolve(f))) {
                        Files.copy(sideFilesFrom.resolve(f), tmp.resolve(f));
                    }
                }
            }
            OutputGuard.writeMarker(tmp, "export-" + format.cliName());
            AtomicDirectory.replace(tmp, target);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
        return new Result(format, target, listFiles(target));
    }

    private static List<WrittenFile> listFiles(Path dir) throws IOException {
        List<WrittenFile> files = new ArrayList<>();
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.sorted().toList()) {
                files.add(new WrittenFile(p, Files.size(p)));
            }
        }
        return files;
    }
}
