package dev.lopper.cli;

import dev.lopper.eval.mc.McResult;
import dev.lopper.eval.report.EvalReport;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.function.Function;

/** Evaluation reports as a text table: one column per report, one row per measure. */
final class ReportTable {
    private ReportTable() {
    }

    static void print(PrintWriter out, List<EvalReport> reports) {
        List<String[]> rows = new ArrayList<>();
        row(rows, "model", reports, EvalReport::model);
        row(rows, "backend", reports, EvalReport::backend);
        row(rows, "device", reports, r -> r.machine() == null ? "-" : r.machine().device() + ", " + r.machine().cpu() + " x" + r.machine().cores());
        row(rows, "parameters", reports, r -> String.format(Locale.ROOT, "%,d", r.parameters()));
        row(rows, "file bytes", reports, r -> String.format(Locale.ROOT, "%,d", r.fileBytes()));
        row(rows, "perplexity", reports, r -> r.perplexity() == null ? "-" : String.format(Locale.ROOT, "%.4f (%s, window %d, stride %d, %d tokens)",
                r.perplexity().perplexity(), r.perplexity().preset(), r.perplexity().window(), r.perplexity().stride(), r.perplexity().scoredTokens()));
        Set<String> tasks = new LinkedHashSet<>();
        reports.forEach(r -> r.tasks().forEach(t -> tasks.add(t.task())));
        for (String t : tasks) {
            row(rows, t + " acc", reports, r -> fmt(r.task(t), true));
            row(rows, t + " acc_norm", reports, r -> fmt(r.task(t), false));
        }
        row(rows, "prefill tok/s", reports, r -> r.speed() == null ? "-" : String.format(Locale.ROOT, "%.0f (%d tokens)",
                r.speed().prefillTokensPerSecond(), r.speed().prefillTokens()));
        row(rows, "decode tok/s", reports, r -> r.speed() == null ? "-" : String.format(Locale.ROOT, "%.1f (%s)",
                r.speed().decodeTokensPerSecond(), r.speed().decodeKvCache() ? "KV cache" : "no cache"));
        row(rows, "peak RSS MiB", reports, r -> r.speed() == null || r.speed().peakRssBytes() < 0 ? "-"
                : String.format(Locale.ROOT, "%.0f", r.speed().peakRssBytes() / 1048576.0));
        row(rows, "model hash", reports, r -> r.modelHash().length() > 23 ? r.modelHash().substring(0, 23) : r.modelHash());
        row(rows, "date", reports, EvalReport::date);
        int[] w = new int[reports.size() + 1];
        for (String[] row : rows) {
            for (int i = 0; i < row.length; i++) {
                w[i] = Math.max(w[i], row[i].length());
            }
        }
        for (String[] row : rows) {
            StringBuilder s = new StringBuilder();
            for (int i = 0; i < row.length; i++) {
                s.append(String.format("%-" + w[i] + "s", row[i])).append(i + 1 < row.length ? "  " : "");
            }
            out.println(s.toString().stripTrailing());
        }
        out.flush();
    }

    private static String fmt(McResult m, boolean acc) {
        if (m == null) {
            return "-";
        }
        double se = acc ? m.accStderr() : m.accNormStderr();
        return String.format(Locale.ROOT, "%.4f ± %s (n=%d)", acc ? m.acc() : m.accNorm(),
                Double.isNaN(se) ? "n/a" : String.format(Locale.ROOT, "%.4f", se), m.examples());
    }

    private static void row(List<String[]> rows, String name, List<EvalReport> reports, Function<EvalReport, String> f) {
        String[] r = new String[reports.size() + 1];
        r[0] = name;
        for (int i = 0; i < reports.size(); i++) {
            r[i + 1] = f.apply(reports.get(i));
        }
        rows.add(r);
    }
}
