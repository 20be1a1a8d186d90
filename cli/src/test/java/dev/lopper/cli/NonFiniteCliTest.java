package dev.lopper.cli;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** NaN/Inf in weights or activations: one line naming the tensor, or the layer and window, for ppl and prune. */
class NonFiniteCliTest {
    @TempDir
    static Path tmp;
    static Path good;
    static Path text;

    @BeforeAll
    static void model() throws Exception {
        good = tmp.resolve("good");
        RandomModels.write(good, RandomModels.llama());
        text = tmp.resolve("t.txt");
        Files.writeString(text, "In the beginning God created the heaven and the earth. ".repeat(20));
    }

    /** A copy of the good model with tensor {@code name} replaced by {@code edit} of it. */
    private static Path edited(String dir, String name, Function<NDArray, NDArray> edit) throws Exception {
        Path out = tmp.resolve(dir);
        try (Checkpoint ck = Checkpoint.open(good); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            NDArray w = ck.load(name, m);
            ModelWriter.save(out, ModelConfig.load(good), new TensorMap(ck).put(name, edit.apply(w)), null, good,
                    ModelWriter.DEFAULT_MAX_SHARD_BYTES, Map.of());
        }
        return out;
    }

    private static void refused(String expected, String... args) {
        CliTest.Result r = CliTest.run(args);
        String err = r.err().strip();
        assertEquals(1, r.code(), String.join(" ", args) + ": " + r.out() + err);
        assertFalse(err.contains("\n"), err);
        assertTrue(err.startsWith("error: ") && err.contains(expected), err);
    }

    @Test
    void aNanWeightIsNamedByPplAndPrune() throws Exception {
        String name = "model.layers.1.mlp.down_proj.weight";
        Path model = edited("nan", name, w -> {
            float[] v = w.toFloatArray();
            v[17] = Float.NaN;
            return w.getManager().create(v, w.getShape());
        });
        String expected = model.resolve("model.safetensors") + ": tensor '" + name + "' holds NaN";
        refused(expected, "ppl", model.toString(), "--text", text.toString(), "--seq-len", "32");
        refused(expected, "prune", model.toString(), "--method", "wanda-sp", "--ratio", "0.2", "--calib", text.toString(),
                "--samples", "4", "--seq-len", "16", "--out", tmp.resolve("p-nan").toString());
        assertFalse(Files.exists(tmp.resolve("p-nan")));
    }

    @Test
    void anInfWeightIsNamed() throws Exception {
        String name = "model.norm.weight";
        Path model = edited("inf", name, w -> w.mul(Float.POSITIVE_INFINITY));
        refused(model.resolve("model.safetensors") + ": tensor '" + name + "' holds Inf",
                "ppl", model.toString(), "--text", text.toString(), "--seq-len", "32");
    }

    @Test
    void anOverflowingActivationNamesTheLayerAndWindow() throws Exception {
        // finite weights whose products overflow fp32: every q/k/v of layer 1 becomes Inf, attention NaN
        Path model = edited("overflow", "model.layers.1.input_layernorm.weight", w -> w.mul(1e37f));
        refused("layer 1 output holds NaN (perplexity window 0)",
                "ppl", model.toString(), "--text", text.toString(), "--seq-len", "32");
        refused("layer 1 output holds NaN (calibration window 0)", "prune", model.toString(), "--method", "wanda-sp",
                "--ratio", "0.2", "--calib", text.toString(), "--samples", "4", "--seq-len", "16", "--out",
                tmp.resolve("p-overflow").toString());
    }
}
