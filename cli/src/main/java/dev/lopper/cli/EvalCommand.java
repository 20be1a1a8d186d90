package dev.lopper.cli;

import dev.lopper.eval.Evaluation;
import dev.lopper.eval.report.EvalReport;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.io.OutputLock;
import dev.lopper.model.util.Progress;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code lopper eval PATH [--text SOURCE] [--task SPEC]... [--out FILE]}: perplexity, accuracy, speed; see docs/EVAL.md. */
@Command(name = "eval", mixinStandardHelpOptions = true,
        description = {"Evaluates a model directory, an ONNX or a TorchScript export: perplexity, accuracy, speed, size.",
                "PATH's contents pick the backend. Perplexity, zero-shot multiple choice (lm-evaluation-harness scoring), speed and size. See docs/EVAL.md."})
final class EvalCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "PATH", description = "model directory, ONNX export (model.onnx) or TorchScript export (model.pt)")
    Path model;

    @Mixin
    EvalOptions eval;

    @Option(names = "--out", paramLabel = "FILE", description = "write the report as JSON (new file, or one Lopper wrote with --overwrite)")
    Path out;

    @Option(names = "--overwrite", description = "replace an --out report Lopper wrote earlier")
    boolean overwrite;

    @Mixin
    ModelOptions options;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        if (out != null) {
            OutputGuard.checkFile(out, overwrite, "--out", "lopper-eval/", model, eval.text);
        }
        var request = eval.request(model, options.device(), Progress.console(System.err));
        EvalReport r;
        try (OutputLock lock = out == null ? null : OutputLock.acquire(out, "--out")) {
            r = new Evaluation().run(request);
            if (out != null) {
                r.write(out);
            }
        }
        if (options.json) {
            Output.json(spec.commandLine().getOut(), r);
        } else {
            ReportTable.print(spec.commandLine().getOut(), List.of(r));
        }
        return 0;
    }
}
