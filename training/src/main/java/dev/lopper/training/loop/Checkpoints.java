package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.training.lora.LoraConfig;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.stream.Stream;

/**
 * The one checkpoint format of every training run ({@link Trainer}): {@code step-NNNNNN/} with
 * <pre>
 *   params.safetensors      every trained tensor by name (fp32): adapters, weights, masks, multipliers
 *   optimizer.safetensors   AdamW's moments, NAME.exp_avg and NAME.exp_avg_sq
 *   state.json              step, optimizer steps per group, data position, seed, the options a resume must match,
 *                           the trainee's shape (after cuts), the method's state, the curve, early-stopping state
 * </pre>
 * Randomness needs no saved state: dropout and noise draw from generators seeded from (seed, step, micro-batch)
 * and the data windows are a pure function of the seed, so (seed, step) is the whole RNG state. Each checkpoint is
 * built under a temporary name and renamed into place ({@link AtomicDirectory}); older ones are deleted only after
 * the new one is complete, so a kill at any moment leaves a whole checkpoint.
 *
 * <pre>{@code
 * Path last = Checkpoints.latest(out.resolve("checkpoints"));   // null: nothing to resume
 * Map<String, F32Tensors.Loaded> params = F32Tensors.read(last.resolve(Checkpoints.PARAMS));
 * }</pre>
 */
public final class Checkpoints {
    public static final String PREFIX = "step-";
    public static final String PARAMS = "params.safetensors";
    public static final String MOMENTS = "optimizer.safetensors";
    public static final String STATE = "state.json";
    private static final ObjectMapper JSON = new ObjectMapper();

    private Checkpoints() {
    }

    /** What state.json holds. */
    public record State(int step, Map<String, Long> optimizerSteps, long dataPosition, long seed, JsonNode options,
                        JsonNode shape, JsonNode method, List<Trainer.Point> history, double best, int sinceBest) {
    }

    /** Optimizer moments by {@code NAME.exp_avg}/{@code NAME.exp_avg_sq}, and steps taken per group. */
    record Moments(Map<String, float[]> moments, Map<String, Long> steps) {
    }

    static void save(Path dir, State state, Map<String, NDArray> params, Map<String, NDArray> moments) throws IOException {
        Path target = dir.resolve(String.format("%s%06d", PREFIX, state.step()));
        Files.createDirectories(dir);
        Path tmp = AtomicDirectory.createTemp(target);
        try {
            F32Tensors.write(tmp.resolve(PARAMS), params, Map.of("format", "pt"));
            F32Tensors.write(tmp.resolve(MOMENTS), moments, Map.of("format", "pt"));
            JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.resolve(STATE).toFile(), state);
            OutputGuard.writeMarker(tmp, "training-checkpoint");
            AtomicDirectory.replace(tmp, target);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
        for (Path old : list(dir)) {
            if (!old.equals(target)) {
                AtomicDirectory.deleteTree(old);
            }
        }
    }

    /**
     * Puts checkpoint {@code dir} back: checks the options against {@code now} (the run's {@link #comparable} options),
     * restores the trainee's tensors (and shape), then the optimizers ({@code optimizers} builds them for the restored
     * groups) and the method's state.
     */
    static <T extends Trainee> State restore(Path dir, JsonNode now, T trainee, TrainingMethod<? super T> method,
                                             Consumer<Moments> optimizers) {
        State s = state(dir);
        if (!s.options().toString().equals(now.toString())) {
            throw new IllegalArgumentException(dir + ": this checkpoint was written with other options (" + s.options() + ", now "
                    + now + "); run with the same options to resume, or --overwrite to start over");
        }
        trainee.restore(s.shape(), F32Tensors.read(dir.resolve(PARAMS)), dir.resolve(PARAMS).toString());
        Map<String, float[]> moments = new LinkedHashMap<>();
        F32Tensors.read(dir.resolve(MOMENTS)).forEach((k, v) -> moments.put(k, v.data()));
        optimizers.accept(new Moments(moments, s.optimizerSteps()));
        if (s.method() != null && !s.method().isNull()) {
            method.restore(s.method());
        }
        return s;
    }

    /** The newest complete checkpoint under {@code dir}, or null. */
    public static Path latest(Path dir) {
        List<Path> all = list(dir);
        return all.isEmpty() ? null : all.get(all.size() - 1);
    }

    public static State state(Path checkpoint) {
        try {
            return JSON.readValue(checkpoint.resolve(STATE).toFile(), State.class);
        } catch (IOException e) {
            throw new IllegalArgumentException(checkpoint.resolve(STATE) + ": unreadable checkpoint state: " + e.getMessage());
        }
    }

    /** A method's checkpointed state ({@code node}) as {@code type}; one that does not fit fails, prefixed {@code what}. */
    public static <T> T read(JsonNode node, Class<T> type, String what) {
        try {
            return JSON.treeToValue(node, type);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException(what + ": " + e.getMessage(), e);
        }
    }

    /** The options as compared on resume: how often checkpoints are written may change between runs. */
    public static JsonNode comparable(TrainOptions o) {
        ObjectNode n = JSON.valueToTree(o);
        n.remove("checkpointEvery");
        return n;
    }

    static JsonNode comparable(TrainOptions o, JsonNode trainee, String method, JsonNode methodOptions) {
        ObjectNode n = JSON.createObjectNode();
        n.set("train", comparable(o));
        n.set("trainee", trainee);
        n.put("method", method);
        n.set("method_options", methodOptions);
        return n;
    }

    /** The LoRA config in a fixed form (targets in their fixed order: a Set's order differs between JVMs). */
    public static JsonNode tree(LoraConfig c) {
        ObjectNode n = JSON.createObjectNode();
        n.put("rank", c.rank()).put("alpha", c.alpha()).put("dropout", c.dropout());
        c.orderedTargets().forEach(n.putArray("targets")::add);
        return n;
    }

    private static List<Path> list(Path dir) {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(dir)) {
            List<Path> l = new ArrayList<>(s.filter(p -> p.getFileName().toString().matches(PREFIX + "\\d+"))
                    .filter(p -> Files.isRegularFile(p.resolve(STATE))).toList());
            l.sort(Comparator.comparing(p -> p.getFileName().toString()));
            return l;
        } catch (IOException e) {
            throw new UncheckedIOException(dir + ": " + e.getMessage(), e);
        }
    }
}
