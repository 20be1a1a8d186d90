package dev.lopper.model;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.config.Family;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** The DJL forward pass against a plain-loop double-precision implementation, on every generated variant. */
class ForwardTest {
    @TempDir
    Path tmp;

    static Stream<RandomModels.Spec> variants() {
        RandomModels.Spec base = RandomModels.llama();
        return Stream.of(
                base,                                             // GQA 4/2, untied
                base.withHeads(4, 4).withTied(true),              // MHA, tied embeddings
                base.withHeads(4, 1).withQkvBias(true),           // MQA with LLaMA attention_bias (q/k/v/o)
                base.withFamily(Family.QWEN2),                    // q/k/v biases only
                base.withFamily(Family.MISTRAL),                  // sliding window 16 (< sequence)
                base.withRopeScaling("llama3").withShards(3),     // LLaMA 3.1 rope scaling, sharded checkpoint
                base.withFamily(Family.QWEN3).withSize(64, 24, 96).withTied(true), // q/k norms, head_dim != hidden/heads
                base.withFamily(Family.QWEN3).withQkvBias(true).withHeads(4, 1),    // Qwen3 attention_bias (q/k/v/o), MQA
                base.withFamily(Family.PHI3),                                        // fused qkv_proj / gate_up_proj
                base.withFamily(Family.PHI3).withHeads(4, 4).withShards(2).withDtype(DataType.BFLOAT16),
                base.withDtype(DataType.BFLOAT16),
                base.withDtype(DataType.FLOAT16));
    }

    @ParameterizedTest
    @MethodSource("variants")
    void matchesNaiveImplementation(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        long[] ids = new long[24];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = (i * 37 + 5) % spec.vocab();
        }
        try (ModelDir md = ModelDir.open(dir); LlamaModel model = md.loadModel(Device.cpu())) {
            float[][] got = model.logits(ids);
            double[][] want;
            // the reference reads the files as stored (Phi-3: fused), not through Lopper's layout
            try (Checkpoint raw = Checkpoint.open(dir)) {
                want = new NaiveLlama(md.config(), raw).logits(ids);
            }
            double maxDiff = 0;
            for (int t = 0; t < ids.length; t++) {
                for (int v = 0; v < spec.vocab(); v++) {
                    maxDiff = Math.max(maxDiff, Math.abs(got[t][v] - want[t][v]));
                }
            }
            dev.lopper.model.testing.TestLog.printf("ForwardTest %s/%s: max abs diff %.3g%n", spec.family(), spec.dtype(), maxDiff);
            assertTrue(maxDiff < 1e-4, spec + ": max abs diff " + maxDiff);
        }
    }
}
