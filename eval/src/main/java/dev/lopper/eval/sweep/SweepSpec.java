package dev.lopper.eval.sweep;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.lopper.model.ModelFormatException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A sweep's specification, {@code OUT/sweep.json}: what every cell runs ({@code args}: the {@code lopper sweep}
 * arguments that define the cells, paths made absolute, resolved from {@code cwd}), the cells in their fixed order
 * (a cell's {@code index} is its Slurm array task id) and every Slurm submission made for it. An array task or the
 * collection job needs nothing but this file: {@code lopper sweep --run-cell OUT N} rebuilds the same request from
 * it. Written beside and renamed into place.
 *
 * <pre>{@code
 * SweepSpec spec = SweepSpec.read(out);
 * Sweep.Point cell = spec.cells().get(3);
 * }</pre>
 *
 * @param format "lopper-sweep/1"
 * @param args the sweep's arguments in canonical order, without --out and the executor's options
 * @param cwd the directory the sweep was started from (relative task files resolve against it)
 * @param submissions the Slurm jobs submitted for this sweep, oldest first
 */
public record SweepSpec(String format, String lopperVersion, String created, String cwd, List<String> args,
                        List<Sweep.Point> cells, List<Submission> submissions) {
    public static final String FORMAT = "lopper-sweep/1";
    /** The file name in the sweep directory. */
    public static final String FILE = "sweep.json";

    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT)
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE);

    public SweepSpec {
        args = List.copyOf(args);
        cells = List.copyOf(cells);
        submissions = submissions == null ? List.of() : List.copyOf(submissions);
    }

    /**
     * One {@code sbatch} of the sweep: the array job (one task per listed cell) and the collection job after it.
     *
     * @param cells the array's task ids (cell indices)
     */
    public record Submission(String arrayJob, String collectJob, List<Integer> cells, String submitted) {
        public Submission {
            cells = List.copyOf(cells);
        }
    }

    /** This spec with one more submission. */
    public SweepSpec with(Submission s) {
        List<Submission> all = new ArrayList<>(submissions);
        all.add(s);
        return new SweepSpec(format, lopperVersion, created, cwd, args, cells, all);
    }

    public static boolean exists(Path out) {
        return Files.isRegularFile(out.resolve(FILE));
    }

    /** Reads {@code out/sweep.json}; a one-line error naming the file otherwise. */
    public static SweepSpec read(Path out) {
        Path file = out.resolve(FILE);
        if (!Files.isRegularFile(file)) {
            throw new IllegalArgumentException(out + ": no " + FILE + "; expected a sweep directory (lopper sweep ... --out " + out + ")");
        }
        try {
            SweepSpec s = JSON.readValue(file.toFile(), SweepSpec.class);
            if (s == null || s.format() == null || !s.format().startsWith("lopper-sweep/")) {
                throw ModelFormatException.file(file, "is not a Lopper sweep specification (field 'format' is not lopper-sweep/...)");
            }
            if (s.args() == null || s.cells() == null || s.cells().isEmpty()) {
                throw ModelFormatException.file(file, "has no 'args' or no 'cells'");
            }
            for (int i = 0; i < s.cells().size(); i++) {
                if (s.cells().get(i).index() != i) {
                    throw ModelFormatException.file(file, "cell " + i + " has index " + s.cells().get(i).index() + "; expected " + i);
                }
            }
            return s;
        } catch (IOException e) {
            throw ModelFormatException.file(file, "cannot read as a sweep specification: " + e.getMessage().lines().findFirst().orElse(""));
        }
    }

    /** Writes {@code out/sweep.json} beside and renames it into place. */
    public void write(Path out) throws IOException {
        dev.lopper.model.io.AtomicFile.write(out.resolve(FILE), tmp -> JSON.writeValue(tmp.toFile(), this));
    }
}
