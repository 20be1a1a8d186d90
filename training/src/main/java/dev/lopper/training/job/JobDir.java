package dev.lopper.training.job;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.training.loop.Checkpoints;
import dev.lopper.training.loop.Trainer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;
import java.util.stream.Stream;

/**
 * The one folder layout and resume rule of every training job ({@code lopper recover}, {@code prune --recover-steps},
 * {@code prune --method lora-prune|adapt-pruner|compresso|efficientllm|bip}, {@code prune --iterative}):
 * <pre>
 *   OUT/                       the final model (an HF directory every command reads), written last, atomically
 *   OUT.job/job.json           what was asked: every setting the result depends on
 *   OUT.job/checkpoints/       the training loop's newest checkpoint ({@link Checkpoints}); schedules: steps/NNNN/
 *   OUT.job/curve.csv, .png    the one curve: step, training and validation loss, learning rate, parameters, the
 *                              method's columns
 *   OUT.job/adapter/           LoRA jobs: the adapter in PEFT's layout
 *   OUT.job/pruned/            prune-and-recover: the pruned model before training
 * </pre>
 * Rule: the same command again resumes (job.json equal: training continues from the newest checkpoint, finished
 * steps are reused); a job with other settings is refused in one line naming the first setting that differs,
 * unless {@code --overwrite} is given or that job never reached a checkpoint (then it starts over). {@code OUT}
 * itself must be new, empty or a Lopper output ({@link OutputGuard}); {@code OUT.job} is Lopper's own.
 *
 * <pre>{@code
 * JobDir job = JobDir.open(out, "recover", request, overwrite, model, data);
 * Path checkpoints = job.checkpoints();       // resumed when job.resumed()
 * ... the final model written to job.out() ...
 * job.finish();                                // its curve copied beside it
 * }</pre>
 *
 * @param out the final model's directory ({@code --out})
 * @param dir {@code OUT.job}
 * @param resumed whether an earlier run of the same job is being continued
 */
public record JobDir(Path out, Path dir, boolean resumed) {
    public static final String SUFFIX = ".job";
    public static final String REQUEST = "job.json";
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Where the job writing {@code out} keeps its work: {@code OUT.job} beside it. */
    public static Path dirOf(Path out) {
        Path abs = out.toAbsolutePath().normalize();
        return abs.resolveSibling(abs.getFileName() + SUFFIX);
    }

    /**
     * Opens (resumes or starts) the job writing {@code out}. Checks everything before writing anything.
     *
     * @param kind what the job is ("recover", "prune-and-recover", "schedule", ...), recorded in job.json
     * @param request every setting the result depends on (compared as JSON on resume)
     * @param inputs the job's input files and directories (null entries ignored): OUT may not overlap them
     */
    public static JobDir open(Path out, String kind, ObjectNode request, boolean overwrite, Path... inputs) throws IOException {
        Path dir = dirOf(out);
        if (check(out, kind, request, overwrite, inputs)) {
            return new JobDir(out, dir, true);
        }
        Path tmp = AtomicDirectory.createTemp(dir);
        try {
            OutputGuard.writeMarker(tmp, "job");
            Files.writeString(tmp.resolve(REQUEST), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(asked(kind, request)),
                    StandardCharsets.UTF_8);
            AtomicDirectory.replace(tmp, dir);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
        return new JobDir(out, dir, false);
    }

    /**
     * Checks what {@link #open} would check, writing nothing: a refusal is an {@link IllegalArgumentException} with one
     * line. Returns whether the job would be resumed.
     */
    public static boolean check(Path out, String kind, ObjectNode request, boolean overwrite, Path... inputs) throws IOException {
        JsonNode now = asked(kind, request);
        Path[] given = Arrays.stream(inputs).filter(Objects::nonNull).toArray(Path[]::new);
        Path dir = dirOf(out);
        boolean ours = OutputGuard.isLopperOutput(dir) && Files.isRegularFile(dir.resolve(REQUEST));
        if (ours && !overwrite) {
            JsonNode saved = read(dir.resolve(REQUEST));
            if (now.equals(saved)) {
                OutputGuard.checkDirectory(out, true, "--out", given);
                return true;
            }
            if (hasProgress(dir)) {
                throw new IllegalArgumentException("--out " + out + ": " + dir + " holds a job with " + difference(saved, now)
                        + "; run that command again to resume it, or pass --overwrite to start over");
            }
            // the other job stopped before its first checkpoint: nothing of it is worth keeping
        }
        OutputGuard.checkDirectory(out, overwrite || ours, "--out", given);
        OutputGuard.checkDirectory(dir, true, "--out " + out + ": its job directory", given); // never a user's folder
        return false;
    }

    private static JsonNode asked(String kind, ObjectNode request) throws IOException {
        ObjectNode asked = JSON.createObjectNode().put("job", kind);
        asked.setAll(request);
        return JSON.readTree(JSON.writeValueAsString(asked)); // as written: a long read back may be an int node
    }

    /** The training text's fields of a job.json, in their order: data and val (absolute paths, or null), val_fraction, val_windows. */
    static void putData(ObjectNode n, Path data, Path val, double valFraction, int valWindows) {
        n.put("data", data == null ? null : data.toAbsolutePath().toString());
        n.put("val", val == null ? null : val.toAbsolutePath().toString());
        n.put("val_fraction", valFraction);
        n.put("val_windows", valWindows);
    }

    /** A file or directory inside {@code OUT.job}. */
    public Path resolve(String name) {
        return dir.resolve(name);
    }

    /** The training loop's checkpoints. */
    public Path checkpoints() {
        return dir.resolve("checkpoints");
    }

    /**
     * Hands {@code trainer} to {@code onStart} (a Ctrl-C handler calls requestStop), runs it and writes {@code curve}
     * of its history into the job folder: no PNG when interrupted, as AWT cannot start while the JVM shuts down
     * (Ctrl-C); the next run draws it.
     */
    public Trainer.Result train(Trainer<?> trainer, Consumer<Trainer<?>> onStart, UnaryOperator<List<Trainer.Point>> curve,
                                String title) throws IOException {
        onStart.accept(trainer);
        Trainer.Result result = trainer.run();
        Curve.write(curve.apply(result.history()), dir, result.interrupted() ? null : title);
        return result;
    }

    /** Copies the job's curve beside the final model, once that is written to {@code OUT}. */
    public void finish() throws IOException {
        for (String f : new String[] {Curve.CSV, Curve.PNG}) {
            if (Files.isRegularFile(dir.resolve(f)) && Files.isDirectory(out)) {
                Files.copy(dir.resolve(f), out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
            }
        }
    }

    /**
     * After a run that failed: deletes {@code OUT.job} when it is Lopper's and holds no checkpoint, so that a failed
     * run leaves nothing behind (a job with a checkpoint stays, to be resumed).
     */
    public static void discardIfNoProgress(Path out) throws IOException {
        Path dir = dirOf(out);
        if (Files.isDirectory(dir, java.nio.file.LinkOption.NOFOLLOW_LINKS) && OutputGuard.isLopperOutput(dir) && !hasProgress(dir)) {
            AtomicDirectory.deleteTree(dir);
        }
    }

    /** Whether the job folder holds anything a resume would continue from. */
    private static boolean hasProgress(Path dir) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.anyMatch(p -> Set.of(Checkpoints.STATE, "done.json", "config.json").contains(p.getFileName().toString()));
        }
    }

    /** "train.learningRate 3.0E-4 (now 1.0E-4)": the first setting that differs, by its path in job.json. */
    static String difference(JsonNode saved, JsonNode now) {
        String d = difference("", saved, now);
        return d == null ? "other settings" : d;
    }

    private static String difference(String path, JsonNode saved, JsonNode now) {
        if (saved != null && now != null && saved.isObject() && now.isObject()) {
            for (Iterator<Map.Entry<String, JsonNode>> it = now.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                String d = difference(path + e.getKey() + ".", saved.get(e.getKey()), e.getValue());
                if (d != null) {
                    return d;
                }
            }
            for (Iterator<String> it = saved.fieldNames(); it.hasNext(); ) {
                String k = it.next();
                if (!now.has(k)) {
                    return path + k + " " + shorten(saved.get(k)) + " (now none)";
                }
            }
            return null;
        }
        if (Objects.equals(saved, now)) {
            return null;
        }
        String name = path.isEmpty() ? "settings" : path.substring(0, path.length() - 1);
        return name + " " + shorten(saved) + " (now " + shorten(now) + ")";
    }

    private static String shorten(JsonNode n) {
        String s = n == null ? "none" : n.isTextual() ? n.asText() : n.toString();
        return s.length() > 80 ? s.substring(0, 77) + "..." : s;
    }

    private static JsonNode read(Path file) {
        try {
            return JSON.readTree(file.toFile());
        } catch (IOException e) {
            return JSON.createObjectNode(); // unreadable: another job's, and not resumable
        }
    }
}
