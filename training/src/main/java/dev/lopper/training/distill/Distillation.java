package dev.lopper.training.distill;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.plan.ModelHash;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * Knowledge distillation from a dense teacher: the student trains on
 * {@code alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE} ({@link KdLoss}).
 *
 * <p>Defaults ({@link #of}): {@code alpha} 1 and {@code T} 1, the Minitron recipe (Sreenivas et al. 2024, "LLM
 * Pruning and Distillation in Practice: The Minitron Approach": logit-only distillation with forward KL,
 * no cross-entropy term; NVIDIA Model Optimizer's {@code LogitsDistillationLoss(temperature=1.0)}, which multiplies
 * by {@code T^2} and averages over every token); {@code topK} {@value #TOP_K}, Lopper's own choice for the teacher
 * cache: the cached KL is a lower bound of the full KL, and on the fixture k = 256 keeps the gap under 8% at T = 1
 * (k = 32: 25%; docs/TRAINING.md, {@code KdLossTest}) at 1544 bytes a token.
 *
 * <pre>{@code
 * Distillation d = Distillation.of(Path.of("fixtures/lopper-tiny")).withCache(Path.of("work/teacher-cache"));
 * Recovery.Settings s = new Recovery.Settings(data, val, LoraConfig.defaults(), options, 0.05, 16, DataType.FLOAT32, false, d, false);
 * }</pre>
 *
 * @param teacher the dense model's directory (same vocabulary as the student)
 * @param alpha weight of the KL term; {@code 1 - alpha} weighs the causal-LM cross-entropy
 * @param temperature softens both distributions; the KL term is multiplied by its square (Hinton et al. 2015)
 * @param cache a teacher cache directory ({@link TeacherCache}: top-k log-probabilities per training token, built on
 *              first use and reused), or null to run the teacher layer-streamed on every micro-batch
 * @param topK log-probabilities per token the cache keeps (the rest as one tail mass)
 * @param hiddenLoss {@code cosine} or {@code mse} between the student's and the teacher's residual streams after
 *                   {@code hiddenLayers} (added to the loss with weight {@code hiddenWeight}), or null (the default: off)
 * @param hiddenLayers student layers compared (each with the teacher layer it came from: {@link #teacherLayers}),
 *                     or null for every student layer
 * @param hiddenWeight weight of the hidden-state loss (default 1)
 */
public record Distillation(Path teacher, double alpha, double temperature, Path cache, int topK, String hiddenLoss,
                           List<Integer> hiddenLayers, double hiddenWeight) {
    /** Cached log-probabilities per token (see the record's docs). */
    public static final int TOP_K = 256;

    public Distillation {
        if (teacher == null) {
            throw new IllegalArgumentException("--teacher: expected the dense model's directory");
        }
        if (!(alpha >= 0 && alpha <= 1)) {
            throw new IllegalArgumentException("--kd-alpha " + alpha + ": expected a weight in [0, 1]");
        }
        if (!(temperature > 0) || Double.isInfinite(temperature)) {
            throw new IllegalArgumentException("--kd-temperature " + temperature + ": expected a positive number");
        }
        if (topK < 1) {
            throw new IllegalArgumentException("--kd-top-k " + topK + ": expected a positive number");
        }
        if (hiddenLoss != null && !HIDDEN_LOSSES.contains(hiddenLoss)) {
            throw new IllegalArgumentException("--hidden-loss " + hiddenLoss + ": expected one of " + String.join(", ", HIDDEN_LOSSES));
        }
        if (hiddenLoss == null && hiddenLayers != null) {
            throw new IllegalArgumentException("--hidden-layers: only with --hidden-loss cosine|mse");
        }
        if (!(hiddenWeight >= 0) || Double.isInfinite(hiddenWeight)) {
            throw new IllegalArgumentException("--hidden-weight " + hiddenWeight + ": expected a non-negative number");
        }
        hiddenLayers = hiddenLayers == null ? null : List.copyOf(new java.util.TreeSet<>(hiddenLayers));
    }

    /** The hidden-state losses: 1 - cosine similarity per token, or the mean squared difference per element. */
    public static final List<String> HIDDEN_LOSSES = List.of("cosine", "mse");

    /** The Minitron defaults: alpha 1, T 1, no cache (teacher streamed), top-k {@value #TOP_K} if a cache is given. */
    public static Distillation of(Path teacher) {
        return new Distillation(teacher, 1.0, 1.0, null, TOP_K, null, null, 1.0);
    }

    public Distillation withAlpha(double a) {
        return new Distillation(teacher, a, temperature, cache, topK, hiddenLoss, hiddenLayers, hiddenWeight);
    }

    public Distillation withTemperature(double t) {
        return new Distillation(teacher, alpha, t, cache, topK, hiddenLoss, hiddenLayers, hiddenWeight);
    }

    public Distillation withCache(Path c) {
        return new Distillation(teacher, alpha, temperature, c, topK, hiddenLoss, hiddenLayers, hiddenWeight);
    }

    public Distillation withTopK(int k) {
        return new Distillation(teacher, alpha, temperature, cache, k, hiddenLoss, hiddenLayers, hiddenWeight);
    }

    /** With a hidden-state loss ({@code null}: off) on {@code layers} (null: every student layer) weighted {@code weight}. */
    public Distillation withHidden(String loss, List<Integer> layers, double weight) {
        return new Distillation(teacher, alpha, temperature, cache, topK, loss, layers, weight);
    }

    /** The student layers the hidden-state loss compares (ascending), empty when it is off. */
    public int[] studentLayers(ModelConfig student) {
        if (hiddenLoss == null) {
            return new int[0];
        }
        int[] l = hiddenLayers == null ? java.util.stream.IntStream.range(0, student.numLayers()).toArray()
                : hiddenLayers.stream().mapToInt(Integer::intValue).toArray();
        for (int i : l) {
            if (i < 0 || i >= student.numLayers()) {
                throw new IllegalArgumentException("--hidden-layers " + i + ": the student has layers 0 to " + (student.numLayers() - 1));
            }
        }
        return l;
    }

    /**
     * The teacher layer each of {@code studentLayers} came from: the student's {@code lopper_plan.json} lists the
     * original layers pruning removed (depth pruning), and the kept ones map in order; a student without a plan must
     * have the teacher's depth (then layer i is layer i). The residual streams compare channel for channel, so the
     * hidden-state loss needs the teacher's {@code hidden_size}; a student with a pruned hidden dimension distils on
     * the logits alone (no hidden-state loss: nothing to map, and nothing is checked).
     */
    public static int[] teacherLayers(Path studentDir, ModelConfig student, ModelConfig teacher, int[] studentLayers) {
        if (studentLayers.length == 0) {
            return new int[0];
        }
        if (student.hiddenSize() != teacher.hiddenSize()) {
            throw new IllegalArgumentException("--hidden-loss: the student " + studentDir + " has hidden_size " + student.hiddenSize()
                    + ", the teacher " + teacher.hiddenSize() + "; the residual streams cannot be compared (logit distillation works: drop --hidden-loss)");
        }
        java.util.List<Integer> kept = new java.util.ArrayList<>();
        Path planFile = studentDir.resolve(dev.lopper.pruning.surgery.Surgery.PLAN_FILE);
        java.util.Set<Integer> removed = Files.isRegularFile(planFile)
                ? new java.util.HashSet<>(dev.lopper.pruning.plan.PruningPlan.load(planFile).removedLayers()) : java.util.Set.of();
        for (int i = 0; i < teacher.numLayers(); i++) {
            if (!removed.contains(i)) {
                kept.add(i);
            }
        }
        if (kept.size() != student.numLayers()) {
            throw new IllegalArgumentException("--hidden-loss: the student " + studentDir + " has " + student.numLayers() + " layers, the teacher "
                    + teacher.numLayers() + (removed.isEmpty() ? "" : " less the " + removed.size() + " its " + dev.lopper.pruning.surgery.Surgery.PLAN_FILE
                    + " removed") + "; expected the student to be the teacher pruned");
        }
        return java.util.Arrays.stream(studentLayers).map(kept::get).toArray();
    }

    /**
     * Checks the teacher against the student before any work: a model directory with the student's vocabulary.
     * Throws {@link IllegalArgumentException} with one line naming both vocabulary sizes on a mismatch.
     *
     * @return the teacher's {@link ModelHash} (job.json records it: a resume with another teacher is refused)
     */
    public String check(Path student, ModelConfig studentConfig) {
        if (!Files.isRegularFile(teacher.resolve("config.json"))) {
            throw new IllegalArgumentException("--teacher " + teacher + ": no config.json (expected the dense model's directory)");
        }
        try (ModelDir t = ModelDir.open(teacher)) {
            if (t.config().vocabSize() != studentConfig.vocabSize()) {
                throw new IllegalArgumentException(String.format(Locale.ROOT,
                        "--teacher %s: vocab_size %d in its config.json, but the student %s has vocab_size %d; distillation needs one vocabulary",
                        teacher, t.config().vocabSize(), student, studentConfig.vocabSize()));
            }
            teacherLayers(student, studentConfig, t.config(), studentLayers(studentConfig)); // the hidden-state loss's layers map

        }
        return ModelHash.of(teacher);
    }

    /** The settings as job.json records them, with the teacher's hash. */
    public ObjectNode json(String teacherHash) {
        ObjectNode n = new ObjectMapper().createObjectNode();
        n.put("teacher", teacher.toAbsolutePath().normalize().toString());
        n.put("teacher_hash", teacherHash);
        n.put("alpha", alpha);
        n.put("temperature", temperature);
        n.put("cache", cache == null ? null : cache.toAbsolutePath().normalize().toString());
        n.put("top_k", cache == null ? null : topK);
        if (hiddenLoss != null) { // only then: the job.json of a logit-only job stays as it was
            n.put("hidden_loss", hiddenLoss);
            n.set("hidden_layers", hiddenLayers == null ? null : new ObjectMapper().valueToTree(hiddenLayers));
            n.put("hidden_weight", hiddenWeight);
        }
        return n;
    }
}
