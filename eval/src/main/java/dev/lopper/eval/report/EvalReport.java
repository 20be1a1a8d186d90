package dev.lopper.eval.report;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.lopper.eval.PerplexityReport;
import dev.lopper.eval.mc.McResult;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.io.AtomicFile;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * What {@code lopper eval} measured on one model, with provenance; written as JSON (snake_case keys) and read back
 * by {@code lopper compare} and the sweep.
 *
 * <pre>{@code
 * EvalReport r = new Evaluation().run(EvalRequest.builder(Path.of("work/pruned")).text(text).build());
 * r.write(Path.of("work/pruned-eval.json"));
 * EvalReport again = EvalReport.read(Path.of("work/pruned-eval.json"));
 * }</pre>
 *
 * @param format "lopper-eval/1"
 * @param modelHash "sha256:..." of config.json and the weights (see {@code Evaluation.modelHash})
 * @param fileBytes bytes of the weight files
 * @param perplexity null when no text was given
 */
public record EvalReport(String format, String lopperVersion, String date, String model, String modelHash, String backend,
                         Machine machine, long seed, long parameters, long fileBytes, PerplexityReport perplexity,
                         List<McResult> tasks, SpeedReport speed) {
    public static final String FORMAT = "lopper-eval/1";
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT)
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE);

    public EvalReport {
        tasks = tasks == null ? List.of() : List.copyOf(tasks);
    }

    /** The mapper reports use (snake_case). */
    public static ObjectMapper json() {
        return JSON;
    }

    /** Writes the report atomically ({@link AtomicFile}: a temporary file beside {@code file}, then a rename). */
    public void write(Path file) throws IOException {
        Files.createDirectories(file.toAbsolutePath().getParent());
        AtomicFile.write(file, tmp -> JSON.writeValue(tmp.toFile(), this));
    }

    /** Reads a report; a one-line error naming the file otherwise. */
    public static EvalReport read(Path file) {
        try {
            EvalReport r = JSON.readValue(file.toFile(), EvalReport.class);
            if (r == null || r.format() == null || !r.format().startsWith("lopper-eval/")) {
                throw ModelFormatException.file(file, "is not a Lopper evaluation report (field 'format' is not lopper-eval/...)");
            }
            return r;
        } catch (IOException e) {
            throw ModelFormatException.file(file, "cannot read as an evaluation report: " + e.getMessage().lines().findFirst().orElse(""));
        }
    }

    /** The task named {@code name}, or null. */
    public McResult task(String name) {
        return tasks.stream().filter(t -> t.task().equals(name)).findFirst().orElse(null);
    }
}
