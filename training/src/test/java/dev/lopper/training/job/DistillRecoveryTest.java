package dev.lopper.training.job;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.Pruner;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.training.distill.Distillation;
import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.loop.Trainer;
import dev.lopper.training.lora.LoraConfig;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Distillation jobs ({@code lopper recover --teacher}, {@code prune --recover-steps --teacher}): a killed job resumes to
 * the model of an uninterrupted one, bit for bit, for LoRA with the streamed teacher, LoRA with the teacher cache and
 * full-parameter training; a teacher that changes under a job stops it, and a resume with another teacher is refused;
 * a teacher with another vocabulary is refused in one line naming both sizes; a cache is built once and reused.
 */
public class DistillRecoveryTest {
    @TempDir
    static Path tmp;
    static Path teacher;
    static Path student;
    static Path text;

    private static final TrainOptions OPTIONS = TrainOptions.defaults(6).withBatch(2, 2, 32)
            .withLearningRate(1e-2).withEvery(2, 2).withSeed(7);

    @BeforeAll
    static void setUp() throws Exception {
        teacher = tmp.resolve("teacher");
        RandomModels.write(teacher, RandomModels.llama().withHeads(4, 2).withLayers(3));
        student = tmp.resolve("student");
        new Pruner().run(PruneRequest.builder(teacher).criterion("magnitude").ratio(0.4).allocation("global").out(student).build());
        text = tmp.resolve("train.txt");
        RandomModels.writeTrainingText(text, 300);
    }

    private static Recovery.Request request(Path out, Distillation d, boolean full) {
        return new Recovery.Request(student, out, Device.cpu(), false, new Recovery.Settings(text, null, LoraConfig.defaults(),
                full ? OPTIONS.withLearningRate(1e-3) : OPTIONS, 0.1, 4, DataType.FLOAT32, false, d, full));
    }

    private static Map<String, float[]> tensors(Path dir) {
        Map<String, float[]> out = new TreeMap<>();
        try (ModelDir d = ModelDir.open(dir); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            for (String n : d.checkpoint().names()) {
                out.put(n, d.checkpoint().load(n, m).toFloatArray());
            }
        }
        return out;
    }

    private static Trainer.Listener killAt(int step, List<String> lines) {
        return new Trainer.Listener() {
            @Override
            public void step(Trainer.Point p, int total, double tps, double eta) {
                if (p.step() == step) {
                    throw new IllegalStateException("killed");
                }
            }

            @Override
            public void message(String line) {
                lines.add(line);
            }
        };
    }

    private static void resumesBitForBit(String name, Distillation d, boolean full) throws Exception {
        Path straight = tmp.resolve(name + "-straight");
        Recovery.Outcome a = Recovery.run(request(straight, d, full), Trainer.Listener.NONE, t -> { });
        List<Trainer.Point> h = a.train().history();
        assertTrue(h.get(h.size() - 1).trainLoss() < h.get(1).trainLoss(), name + ": the distillation loss falls " + h);
        Path killed = tmp.resolve(name + "-killed");
        assertThrows(IllegalStateException.class, () -> Recovery.run(request(killed, d, full), killAt(3, new ArrayList<>()), t -> { }));
        Recovery.Outcome b = Recovery.run(request(killed, d, full), Trainer.Listener.NONE, t -> { });
        assertEquals(2, b.train().resumedFrom(), name);
        assertEquals(h, b.train().history(), name);
        Map<String, float[]> x = tensors(straight);
        Map<String, float[]> y = tensors(killed);
        assertEquals(x.keySet(), y.keySet());
        x.forEach((k, v) -> assertArrayEquals(v, y.get(k), name + " " + k)); // exact float equality
        JsonNode job = new ObjectMapper().readTree(JobDir.dirOf(killed).resolve(JobDir.REQUEST).toFile());
        assertEquals(ModelHash.of(teacher), job.at("/distill/teacher_hash").asText());
        assertEquals(full, job.path("training").asText().equals("full"));
    }

    @Test
    void loraWithTheStreamedTeacherResumesBitForBit() throws Exception {
        resumesBitForBit("lora-streamed", Distillation.of(teacher).withAlpha(0.5).withTemperature(2), false);
    }

    @Test
    void loraWithTheTeacherCacheResumesBitForBitAndReusesTheCache() throws Exception {
        Distillation d = Distillation.of(teacher).withTopK(16).withCache(tmp.resolve("cache"));
        resumesBitForBit("lora-cached", d, false);
        assertTrue(Files.isRegularFile(tmp.resolve("cache").resolve("cache.json")));
        List<String> lines = new ArrayList<>();
        Recovery.run(request(tmp.resolve("lora-cached-again"), d, false), killAt(-1, lines), t -> { });
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("reusing the teacher cache")), lines.toString());
    }

    @Test
    void fullParameterWithTheStreamedTeacherResumesBitForBit() throws Exception {
        resumesBitForBit("full-streamed", Distillation.of(teacher), true);
    }

    @Test
    void aTeacherThatChangesStopsTheJobAndAnotherTeacherIsNotResumed() throws Exception {
        Path t2 = tmp.resolve("teacher-changing");
        RandomModels.write(t2, RandomModels.llama().withHeads(4, 2).withLayers(3));
        Path out = tmp.resolve("changing");
        Distillation d = Distillation.of(t2);
        Trainer.Listener edit = new Trainer.Listener() {
            @Override
            public void step(Trainer.Point p, int total, double tps, double eta) {
                if (p.step() == 2) {
                    try {
                        Files.writeString(t2.resolve("config.json"), "\n", StandardOpenOption.APPEND); // still valid JSON, another hash
                    } catch (java.io.IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                }
            }
        };
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Recovery.run(request(out, d, false), edit, t -> { }));
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
        assertTrue(e.getMessage().contains("changed while the job ran"), e.getMessage());
        // the same command with the changed teacher: job.json records the old hash, the job is not resumed with this one
        IllegalArgumentException r = assertThrows(IllegalArgumentException.class, () -> Recovery.run(request(out, d, false), Trainer.Listener.NONE, t -> { }));
        assertFalse(r.getMessage().contains("\n"), r.getMessage());
        assertTrue(r.getMessage().contains("distill.teacher_hash"), r.getMessage());
    }

    @Test
    void aTeacherWithAnotherVocabularyIsRefusedInOneLine() throws Exception {
        Path other = tmp.resolve("teacher-vocab");
        RandomModels.Spec s = RandomModels.llama();
        RandomModels.write(other, new RandomModels.Spec(s.family(), 400, s.hidden(), s.layers(), s.heads(), s.kvHeads(), s.headDim(),
                s.intermediate(), s.tied(), s.qkvBias(), s.shards(), s.dtype(), s.seed(), s.ropeTheta(), s.ropeScaling(), s.slidingWindow()));
        Path out = tmp.resolve("vocab");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Recovery.run(request(out, Distillation.of(other), false), Trainer.Listener.NONE, t -> { }));
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
        assertTrue(e.getMessage().contains("vocab_size 400") && e.getMessage().contains("vocab_size 300"), e.getMessage());
        assertFalse(Files.exists(JobDir.dirOf(out)), "refused before any work");
    }

    /** A student with a pruned hidden dimension (Minitron's width) distils on the logits; a hidden-state loss is refused in one line. */
    @Test
    void hiddenPrunedStudentDistilsOnLogitsAndRefusesTheHiddenLoss() throws Exception {
        Path narrow = tmp.resolve("narrow");
        new Pruner().run(PruneRequest.builder(teacher).criterion("magnitude").ratio(0.25).targets("hidden").out(narrow).build());
        java.util.function.Function<Distillation, Recovery.Request> req = d -> new Recovery.Request(narrow,
                tmp.resolve("narrow-" + (d.hiddenLoss() == null ? "kd" : "hidden")), Device.cpu(), false, new Recovery.Settings(text, null,
                LoraConfig.defaults(), OPTIONS, 0.1, 4, DataType.FLOAT32, false, d, false));
        try (ModelDir s = ModelDir.open(narrow); ModelDir t = ModelDir.open(teacher)) {
            assertTrue(s.config().hiddenSize() < t.config().hiddenSize());
        }
        Recovery.run(req.apply(Distillation.of(teacher)), Trainer.Listener.NONE, t -> { });
        assertTrue(Files.isRegularFile(tmp.resolve("narrow-kd").resolve("model.safetensors")));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Recovery.run(req.apply(Distillation.of(teacher).withHidden("cosine", null, 1)), Trainer.Listener.NONE, t -> { }));
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
        assertTrue(e.getMessage().contains("hidden_size") && e.getMessage().contains("drop --hidden-loss"), e.getMessage());
    }

    /** A depth-pruned student: each kept layer's output is compared with the teacher layer it came from; resumes bit for bit. */
    @Test
    void hiddenStateLossOnADepthPrunedStudentMapsLayersAndResumes() throws Exception {
        Path shallow = tmp.resolve("shallow");
        new Pruner().run(PruneRequest.builder(teacher).criterion("magnitude").ratio(0.34).targets("layers").out(shallow).build());
        java.util.List<Integer> removed = dev.lopper.pruning.plan.PruningPlan.load(shallow.resolve("lopper_plan.json")).removedLayers();
        assertEquals(1, removed.size());
        int[] expected = java.util.stream.IntStream.range(0, 3).filter(i -> !removed.contains(i)).toArray();
        try (ModelDir s = ModelDir.open(shallow); ModelDir t = ModelDir.open(teacher)) {
            assertEquals(2, s.config().numLayers());
            Distillation d = Distillation.of(teacher).withHidden("cosine", null, 1);
            assertArrayEquals(expected, Distillation.teacherLayers(shallow, s.config(), t.config(), d.studentLayers(s.config())));
        }
        for (boolean full : new boolean[] {false, true}) {
            Distillation d = Distillation.of(teacher).withHidden(full ? "mse" : "cosine", full ? java.util.List.of(1) : null, 0.5);
            java.util.function.Function<Path, Recovery.Request> req = out -> new Recovery.Request(shallow, out, Device.cpu(), false, new Recovery.Settings(text, null,
                    LoraConfig.defaults(), full ? OPTIONS.withLearningRate(1e-3) : OPTIONS, 0.1, 4, DataType.FLOAT32, false, d, full));
            Path straight = tmp.resolve("hidden-straight-" + full);
            Recovery.run(req.apply(straight), Trainer.Listener.NONE, t -> { });
            Path killed = tmp.resolve("hidden-killed-" + full);
            assertThrows(IllegalStateException.class, () -> Recovery.run(req.apply(killed), killAt(3, new ArrayList<>()), t -> { }));
            Recovery.run(req.apply(killed), Trainer.Listener.NONE, t -> { });
            Map<String, float[]> x = tensors(straight);
            Map<String, float[]> y = tensors(killed);
            x.forEach((k, v) -> assertArrayEquals(v, y.get(k), k));
            JsonNode job = new ObjectMapper().readTree(JobDir.dirOf(killed).resolve(JobDir.REQUEST).toFile());
            assertEquals(full ? "mse" : "cosine", job.at("/distill/hidden_loss").asText());
        }
        // the streamed student keeps one layer at a time: no hidden-state loss there
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Recovery.run(new Recovery.Request(shallow,
                tmp.resolve("hidden-stream"), Device.cpu(), false, new Recovery.Settings(text, null, LoraConfig.defaults(), OPTIONS, 0.1, 4,
                DataType.FLOAT32, true, Distillation.of(teacher).withHidden("mse", null, 1), false)), Trainer.Listener.NONE, t -> { }));
        assertTrue(e.getMessage().contains("not with --stream"), e.getMessage());
        // a student deeper than the teacher allows: refused before any work
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> Recovery.run(new Recovery.Request(student,
                tmp.resolve("hidden-bad"), Device.cpu(), false, new Recovery.Settings(text, null, LoraConfig.defaults(), OPTIONS, 0.1, 4,
                DataType.FLOAT32, false, Distillation.of(shallow).withHidden("mse", null, 1), false)), Trainer.Listener.NONE, t -> { }));
        assertTrue(bad.getMessage().contains("expected the student to be the teacher pruned"), bad.getMessage());
    }

    @Test
    void pruneAndRecoverWithTheUnprunedModelAsTeacherEqualsRecoverySeparately() throws Exception {
        Distillation d = Distillation.of(teacher).withAlpha(0.5);
        PruneRequest p = PruneRequest.builder(teacher).criterion("magnitude").ratio(0.4).allocation("global").out(tmp.resolve("chained")).build();
        PruneAndRecover.Outcome o = PruneAndRecover.run(new PruneAndRecover.Request(p, new Recovery.Settings(text, null, LoraConfig.defaults(),
                OPTIONS, 0.1, 4, DataType.FLOAT32, false, d, false)), Trainer.Listener.NONE, t -> { });
        assertNotNull(o.out());
        Path sep = tmp.resolve("separate");
        Recovery.run(request(sep, d, false), Trainer.Listener.NONE, t -> { }); // the student is the same magnitude 0.4 prune
        Map<String, float[]> x = tensors(o.out());
        Map<String, float[]> y = tensors(sep);
        x.forEach((k, v) -> assertArrayEquals(v, y.get(k), k));
    }
}
