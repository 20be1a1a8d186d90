package dev.lopper.cli;

import dev.lopper.eval.sweep.Sweep;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.io.OutputLock;
import dev.lopper.model.util.Progress;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code lopper sweep MODEL --methods a,b --ratios x,y --out DIR}: prune -> eval per cell, resumable; docs/EVAL.md. */
@Command(name = "sweep", mixinStandardHelpOptions = true,
        description = {"Prunes MODEL with every method at every ratio and evaluates each cell and the dense model.",
                "Each cell is a directory with its report. Rerunning with the same --out skips finished cells and redoes half-done ones.",
                "Writes results.md and PNG plots. See docs/EVAL.md."})
final class SweepCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL", description = "HF model directory")
    Path model;

    @Option(names = "--methods", required = true, split = ",", description = "criteria, e.g. flap,wanda-sp,magnitude,cfsp")
    List<String> methods;

    @Option(names = "--ratios", required = true, split = ",", description = "pruning ratios, e.g. 0.1,0.2,0.5")
    List<Double> ratios;

    @Option(names = "--calib", paramLabel = "SOURCE", description = "calibration text for the methods that need it")
    Path calib;

    @Option(names = "--samples", description = "calibration windows (default: each method's paper default)")
    Integer samples;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "sweep directory: new, empty, or an earlier sweep's to resume")
    Path out;

    @Mixin
    EvalOptions eval;

    @Mixin
    ModelOptions options;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        boolean resume = Files.isRegularFile(out.resolve(OutputGuard.MARKER))
                && Files.readString(out.resolve(OutputGuard.MARKER)).contains("\"sweep\"");
        if (!resume) {
            OutputGuard.checkDirectory(out, false, "--out", model, calib, eval.text);
        } else {
            OutputGuard.checkNotOverlapping(out, "--out", model, calib, eval.text);
        }
        Progress progress = Progress.console(System.err);
        List<Sweep.Cell> cells;
        try (OutputLock lock = OutputLock.acquire(out, "--out")) {
            Files.createDirectories(out);
            if (!resume) {
                OutputGuard.writeMarker(out, "sweep");
            }
            cells = new Sweep().run(new Sweep.Request(model, methods, ratios, calib, samples, eval.seed, out,
                    m -> eval.request(m, options.device(), progress), progress));
        }
        if (options.json) {
            Output.json(spec.commandLine().getOut(), cells.stream().map(c -> java.util.Map.of("cell", c.name(), "skipped", c.skipped(),
                    "report", out.resolve(c.name()).resolve(Sweep.REPORT).toString())).toList());
        } else {
            spec.commandLine().getOut().print(Files.readString(out.resolve("results.md")));
            spec.commandLine().getOut().printf("%d cells (%d finished earlier), plots: %s%n", cells.size(),
                    cells.stream().filter(Sweep.Cell::skipped).count(), Arrays.asList("ppl-vs-ratio.png", "acc-vs-ratio.png", "speed-vs-params.png"));
            spec.commandLine().getOut().flush();
        }
        return 0;
    }
}
