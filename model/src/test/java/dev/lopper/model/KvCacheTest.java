package dev.lopper.model;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.config.Family;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Incremental decoding with a KV cache gives the logits of the full sequence, step by step. */
class KvCacheTest {
    @TempDir
    Path tmp;

    static Stream<RandomModels.Spec> variants() {
        RandomModels.Spec base = RandomModels.llama();
        return Stream.of(base, base.withFamily(Family.QWEN2), base.withFamily(Family.MISTRAL),
                base.withHeads(4, 1).withQkvBias(true).withRopeScaling("llama3"),
                base.withFamily(Family.QWEN3).withSize(64, 24, 96), base.withFamily(Family.PHI3));
    }

    @ParameterizedTest
    @MethodSource("variants")
    void cachedStepsEqualFullSequence(RandomModels.Spec spec) throws Exception {
        RandomModels.write(tmp.resolve("m"), spec);
        // longer than Mistral's 16-token window, and past the cache's initial room twice (64, then 128 tokens)
        long[] ids = new long[2 * KvCache.INITIAL_CAPACITY + 10];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = (i * 53 + 11) % spec.vocab();
        }
        try (ModelDir md = ModelDir.open(tmp.resolve("m")); LlamaModel model = md.loadModel(Device.cpu());
             NDManager m = NDManager.newBaseManager(Device.cpu())) {
            int before = model.managedArrays();
            float[][] full = model.logits(ids);
            double max = 0;
            try (KvCache cache = model.newCache()) {
                int prefill = 10;
                float[] got = model.logits(m.create(Arrays.copyOf(ids, prefill), new Shape(1, prefill)), cache).toFloatArray();
                int v = spec.vocab();
                for (int t = 0; t < prefill; t++) {
                    max = Math.max(max, maxDiff(full[t], Arrays.copyOfRange(got, t * v, (t + 1) * v)));
                }
                for (int t = prefill; t < ids.length; t++) {
                    NDArray step = model.logits(m.create(new long[] {ids[t]}, new Shape(1, 1)), cache);
                    max = Math.max(max, maxDiff(full[t], step.toFloatArray()));
                }
                assertEquals(ids.length, cache.length());
            }
            assertTrue(max < 1e-5, spec + ": max abs diff " + max);
            long[] prompt = Arrays.copyOf(ids, 5);
            assertArrayEquals(Generation.greedyWindowed(model, prompt, 20), Generation.greedy(model, prompt, 20));
            assertEquals(before, model.managedArrays(), "the cache's arrays are released with it");
        }
    }

    @org.junit.jupiter.api.Test
    void generationPastTheContextLengthKeepsTheCacheUntilThenAndStreamsEveryToken() throws Exception {
        Path dir = tmp.resolve("short");
        RandomModels.write(dir, RandomModels.llama());
        // a context of 12 tokens: 5 prompt tokens + 7 cached steps, then 13 windowed steps
        Path config = dir.resolve("config.json");
        java.nio.file.Files.writeString(config, java.nio.file.Files.readString(config)
                .replaceAll("\"max_position_embeddings\"\\s*:\\s*\\d+", "\"max_position_embeddings\" : 12"));
        try (ModelDir md = ModelDir.open(dir); LlamaModel model = md.loadModel(Device.cpu())) {
            assertEquals(12, model.config().maxPositionEmbeddings());
            long[] prompt = {3, 1, 4, 1, 5};
            assertTrue(Generation.exceedsContext(model, prompt.length, 20));
            java.util.List<Long> streamed = new java.util.ArrayList<>();
            long[] got = Generation.greedy(model, prompt, 20, streamed::add);
            assertArrayEquals(Generation.greedyWindowed(model, prompt, 20), got);
            assertEquals(got.length - prompt.length, streamed.size());
            for (int i = 0; i < streamed.size(); i++) {
                assertEquals(got[prompt.length + i], streamed.get(i));
            }
        }
    }

    private static double maxDiff(float[] a, float[] b) {
        double max = 0;
        for (int i = 0; i < a.length; i++) {
            max = Math.max(max, Math.abs(a[i] - b[i]));
        }
        return max;
    }
}
