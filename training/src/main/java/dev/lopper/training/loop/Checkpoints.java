package dev.lopper.training.loop;

import dev.lopper.training.lora.LoraConfig;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.io.AtomicDirectory;
import dev.lopper.model.io.OutputGuard;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * A training checkpoint: {@code step-NNNNNN/} with {@code adapter.safetensors} (A and B, PEFT names, fp32),
 * {@code optimizer.safetensors} (AdamW's moments) and {@code state.json} (step, optimizer steps, data position,
 * seed, the run's options, the loss history and early-stopping state). Randomness needs no saved state: dropout
 * draws from torch's generator re-seeded from (seed, step, micro-batch) before each micro-batch, and the data
 * windows are a pure function of the seed, so (seed, step) is the whole RNG state.
 *
 * <p>Each checkpoint is built under a temporary name and renamed into place ({@link AtomicDirectory}); older ones
 * are deleted only after the new one is complete, so a kill at any moment leaves a whole checkpoint.
 */
public final class Checkpoints {
    static final String PREFIX = "step-";
    private static final ObjectMapper JSON = new ObjectMapper();

    private Checkpoints() {
    }

    /** What state.json holds. */
    record State(int step, long optimizerSteps, long dataPosition, long seed, String rng, JsonNode options, JsonNode lora,
                 List<Trainer.Point> history, double best, int sinceBest) {
    }

    static Path save(Path dir, State state, Map<String, ai.djl.ndarray.NDArray> adapter, Map<String, ai.djl.ndarray.NDArray> moments)
            throws IOException {
        return saveFiles(dir, state, Map.of("adapter.safetensors", adapter, "optimizer.safetensors", moments), Map.of());
    }

    /**
     * A checkpoint with any fp32 tensor files ({@code file name -> tensors}) and extra JSON documents beside
     * state.json (full training keeps the model, its config and the pruning method's state this way).
     */
    static Path saveFiles(Path dir, State state, Map<String, Map<String, ai.djl.ndarray.NDArray>> tensorFiles,
                     Map<String, JsonNode> jsonFiles) throws IOException {
        Path target = dir.resolve(String.format("%s%06d", PREFIX, state.step()));
        Path tmp = AtomicDirectory.createTemp(target);
        try {
            for (Map.Entry<String, Map<String, ai.djl.ndarray.NDArray>> f : tensorFiles.entrySet()) {
                F32Tensors.write(tmp.resolve(f.getKey()), f.getValue(), Map.of("format", "pt"));
            }
            for (Map.Entry<String, JsonNode> f : jsonFiles.entrySet()) {
                JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.resolve(f.getKey()).toFile(), f.getValue());
            }
            JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.resolve("state.json").toFile(), state);
            OutputGuard.writeMarker(tmp, "recover-checkpoint");
            AtomicDirectory.replace(tmp, target);
        } finally {
            AtomicDirectory.deleteTree(tmp);
        }
        for (Path old : list(dir)) {
            if (!old.equals(target)) {
                AtomicDirectory.deleteTree(old);
            }
        }
        return target;
    }

    /** The newest complete checkpoint under {@code dir}, or null. */
    static Path latest(Path dir) {
        List<Path> all = list(dir);
        return all.isEmpty() ? null : all.get(all.size() - 1);
    }

    static State state(Path checkpoint) {
        try {
            return JSON.readValue(checkpoint.resolve("state.json").toFile(), State.class);
        } catch (IOException e) {
            throw new IllegalArgumentException(checkpoint.resolve("state.json") + ": unreadable checkpoint state: " + e.getMessage());
        }
    }

    /** The options as compared on resume (how often checkpoints are written may change between runs). */
    public static JsonNode comparable(TrainOptions o) {
        ObjectNode n = JSON.valueToTree(o);
        n.remove("checkpointEvery");
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
                    .filter(p -> Files.isRegularFile(p.resolve("state.json"))).toList());
            l.sort(Comparator.comparing(p -> p.getFileName().toString()));
            return l;
        } catch (IOException e) {
            throw new UncheckedIOException(dir + ": " + e.getMessage(), e);
        }
    }
}
