package dev.lopper.cli;

import dev.lopper.export.ExportDtype;
import dev.lopper.export.ExportFormat;
import dev.lopper.export.Exporter;
import dev.lopper.model.ModelDir;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.io.OutputLock;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code lopper export MODEL --format onnx|onnx-kv|torchscript|hf|gguf [--dtype f32|f16|bf16|q8_0] --out DIR}: writes a (pruned) model in a format
 * other programs load (see docs/EXPORT.md), atomically, and prints the files written and their sizes.
 */
@Command(name = "export", mixinStandardHelpOptions = true,
        description = {"Writes MODEL (an HF directory, pruned or not) as ONNX, ONNX with KV cache, TorchScript, GGUF or HF.",
                "The output is written atomically: a failed export leaves nothing behind. An existing --out is replaced only with",
                "--overwrite and only if Lopper wrote it. See docs/EXPORT.md."})
public final class ExportCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL", description = "model directory (config.json, *.safetensors, tokenizer.json)")
    Path model;

    @Option(names = "--format", required = true, paramLabel = "FORMAT",
            description = "onnx (input_ids, attention_mask -> logits), onnx-kv (with past/present key-values), "
                    + "torchscript (torch.jit.load: input_ids -> logits), hf (config.json + safetensors) or gguf (llama.cpp)")
    String format;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "directory to write: a new or empty one, or one Lopper wrote with --overwrite")
    Path out;

    @Option(names = "--overwrite", description = "replace an existing --out that Lopper wrote earlier (never anything else)")
    boolean overwrite;

    @Option(names = "--external-data", description = "ONNX: put weights in model.onnx.data even below the 2 GB protobuf limit")
    boolean externalData;

    @Option(names = "--dtype", paramLabel = "DTYPE", defaultValue = "f32",
            description = "weight matrices as f32 (default), f16 or bf16 (onnx, onnx-kv, gguf) or q8_0 (gguf)")
    String dtype;

    @Option(names = "--json", description = "print what was written as JSON")
    boolean json;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        ExportFormat f = ExportFormat.parse(format);
        ExportDtype d = ExportDtype.parse(dtype);
        OutputGuard.checkDirectory(out, overwrite, "--out", model);
        Exporter.Result r;
        try (OutputLock lock = OutputLock.acquire(out, "--out"); ModelDir md = ModelDir.open(model)) {
            // HF keeps each tensor's dtype; the other formats hold fp32 weights at most
            long expected = f == ExportFormat.HF ? md.checkpoint().dataBytes() : 4 * dev.lopper.model.ModelStats.parameters(md.config());
            OutputGuard.checkFreeSpace(out, expected, "--out");
            r = Exporter.export(md.config(), md.checkpoint(), model, f, out, externalData, d);
        }
        PrintWriter w = spec.commandLine().getOut();
        if (json) {
            List<Map<String, Object>> files = new ArrayList<>();
            for (Exporter.WrittenFile file : r.files()) {
                Map<String, Object> e = new LinkedHashMap<>();
                e.put("path", file.path().toString());
                e.put("bytes", file.bytes());
                files.add(e);
            }
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("format", f.cliName());
            o.put("dir", r.dir().toString());
            o.put("files", files);
            o.put("total_bytes", r.totalBytes());
            Output.json(w, o);
        } else {
            w.printf("exported %s as %s to %s%n", model, f.cliName(), r.dir());
            for (Exporter.WrittenFile file : r.files()) {
                w.printf("  %-28s %12d bytes  (%s)%n", file.path().getFileName(), file.bytes(), human(file.bytes()));
            }
            w.printf("  %-28s %12d bytes  (%s)%n", "total", r.totalBytes(), human(r.totalBytes()));
        }
        w.flush();
        return 0;
    }

    static String human(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }
}
