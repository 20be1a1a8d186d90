package dev.lopper.cli;

import dev.lopper.eval.report.EvalReport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code lopper compare A.json B.json ...}: evaluation reports side by side. */
@Command(name = "compare", mixinStandardHelpOptions = true, description = "Puts evaluation reports (lopper eval --out) side by side.")
final class CompareCommand implements Callable<Integer> {
    @Parameters(arity = "1..*", paramLabel = "REPORT", description = "report JSON files")
    List<Path> reports;

    @Option(names = "--json", description = "print the reports as one JSON document")
    boolean json;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        List<EvalReport> rs = reports.stream().map(EvalReport::read).toList();
        if (json) {
            Output.json(spec.commandLine().getOut(), Map.of("reports", rs));
        } else {
            ReportTable.print(spec.commandLine().getOut(), rs);
        }
        return 0;
    }
}
