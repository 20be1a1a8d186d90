package dev.lopper.export;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.params.provider.Arguments;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertFalse;

/**
 * Test models: the committed fixture when present, and "pruned" models made by plain row/column slicing (keep the
 * first KV groups, the first query heads of each kept group and the first MLP channels), optionally with FLAP-style
 * o_proj/down_proj biases. Not the real surgery (that lives in the pruning module); enough to give every layer its
 * own shape.
 */
public final class TestModels {
    private TestModels() {
    }

    /**
     * The model variants every export format is checked on: (name, spec, pruned). "Pruned" variants are sliced to
     * non-uniform layers with FLAP-style biases by {@link #variantDir}.
     */
    public static Stream<Arguments> variants() {
        RandomModels.Spec base = RandomModels.llama();
        return Stream.of(
                Arguments.of("gqa", base, false),
                Arguments.of("mha-tied", base.withHeads(4, 4).withTied(true), false),
                Arguments.of("mqa-attention-bias", base.withHeads(4, 1).withQkvBias(true), false),
                Arguments.of("qwen2", base.withFamily(Family.QWEN2), false),
                Arguments.of("mistral-window", base.withFamily(Family.MISTRAL), false),
                Arguments.of("llama3-rope-bf16", base.withRopeScaling("llama3").withDtype(DataType.BFLOAT16), false),
                Arguments.of("qwen3-qk-norm-tied", base.withFamily(Family.QWEN3).withSize(64, 24, 96).withTied(true), false),
                Arguments.of("phi3-fused", base.withFamily(Family.PHI3), false),
                Arguments.of("pruned-gqa-biases", base.withLayers(4).withHeads(8, 4), true),
                Arguments.of("pruned-qwen3", base.withLayers(3).withFamily(Family.QWEN3).withHeads(6, 3).withSize(64, 8, 96), true),
                Arguments.of("pruned-phi3", base.withLayers(3).withFamily(Family.PHI3).withHeads(8, 4).withDtype(DataType.BFLOAT16), true),
                Arguments.of("pruned-qwen2-tied", base.withLayers(3).withFamily(Family.QWEN2).withHeads(6, 3).withTied(true), true));
    }

    /** A model dir under {@code tmp} for a variant: the random model, or it sliced to non-uniform layers with FLAP biases. */
    public static Path variantDir(Path tmp, RandomModels.Spec spec, boolean pruned) throws Exception {
        Path dense = tmp.resolve("dense");
        RandomModels.write(dense, spec);
        if (!pruned) {
            return dense;
        }
        ModelConfig c = ModelConfig.load(dense);
        Path out = slice(dense, nonUniform(c, 0.6, true), tmp.resolve("pruned"));
        assertFalse(ModelConfig.load(out).isUniform(), "the pruned test model must have non-uniform layers");
        return out;
    }

    /** fixtures/lopper-tiny in the repository, or null when its weights are not there (yet). */
    public static Path fixture() {
        try {
            Path p = Fixtures.root().resolve("fixtures/lopper-tiny");
            return Files.exists(p.resolve("model.safetensors")) ? p : null;
        } catch (IllegalStateException e) {
            return null;
        }
    }

    /**
     * Layer shapes that keep {@code fraction} of each layer's KV groups and MLP channels, varying by layer
     * (layer i keeps fraction +/- a little), so no two neighbouring layers agree.
     */
    public static List<LayerShape> nonUniform(ModelConfig c, double fraction, boolean biases) {
        List<LayerShape> out = new ArrayList<>();
        for (int i = 0; i < c.numLayers(); i++) {
            LayerShape s = c.layer(i);
            double f = Math.min(1.0, Math.max(0.05, fraction + (i % 3 - 1) * 0.1));
            int kv = Math.max(1, (int) Math.round(s.numKvHeads() * f));
            int group = s.groupSize();
            int groupKept = i % 2 == 0 ? group : Math.max(1, group - 1);
            int inter = Math.max(1, (int) Math.round(s.intermediateSize() * f));
            out.add(new LayerShape(kv * groupKept, kv, inter, biases && i % 2 == 0, biases && i % 3 != 2));
        }
        return out;
    }

    /** Writes {@code src} sliced to {@code shapes} (fp32) into {@code out}; returns out. */
    public static Path slice(Path src, List<LayerShape> shapes, Path out) throws IOException {
        try (ModelDir md = ModelDir.open(src); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            ModelConfig c = md.config();
            TensorMap t = new TensorMap(md.checkpoint());
            int d = c.headDim();
            SplittableRandom rnd = new SplittableRandom(7);
            for (int i = 0; i < c.numLayers(); i++) {
                LayerShape from = c.layer(i);
                LayerShape to = shapes.get(i);
                int[] kvRows = new int[to.numKvHeads() * d];
                int[] qRows = new int[to.numHeads() * d];
                int q = 0;
                for (int g = 0; g < to.numKvHeads(); g++) {
                    for (int r = 0; r < d; r++) {
                        kvRows[g * d + r] = g * d + r;
                    }
                    for (int j = 0; j < to.groupSize(); j++) {
                        int head = g * from.groupSize() + j;
                        for (int r = 0; r < d; r++) {
                            qRows[q++] = head * d + r;
                        }
                    }
                }
                int[] channels = new int[to.intermediateSize()];
                for (int j = 0; j < channels.length; j++) {
                    channels[j] = j;
                }
                rows(t, m, WeightNames.attn(i, "q_proj", "weight"), qRows);
                rows(t, m, WeightNames.attn(i, "k_proj", "weight"), kvRows);
                rows(t, m, WeightNames.attn(i, "v_proj", "weight"), kvRows);
                if (c.qkvBias()) {
                    rows(t, m, WeightNames.attn(i, "q_proj", "bias"), qRows);
                    rows(t, m, WeightNames.attn(i, "k_proj", "bias"), kvRows);
                    rows(t, m, WeightNames.attn(i, "v_proj", "bias"), kvRows);
                }
                cols(t, m, WeightNames.attn(i, "o_proj", "weight"), qRows);
                rows(t, m, WeightNames.mlp(i, "gate_proj", "weight"), channels);
                rows(t, m, WeightNames.mlp(i, "up_proj", "weight"), channels);
                cols(t, m, WeightNames.mlp(i, "down_proj", "weight"), channels);
                if (to.oProjBias() && !t.has(WeightNames.attn(i, "o_proj", "bias"))) {
                    t.put(WeightNames.attn(i, "o_proj", "bias"), gaussian(m, rnd, c.hiddenSize()));
                }
                if (to.downProjBias()) {
                    t.put(WeightNames.mlp(i, "down_proj", "bias"), gaussian(m, rnd, c.hiddenSize()));
                }
            }
            ModelWriter.save(out, c.withLayers(shapes), t, DataType.FLOAT32, src, ModelWriter.DEFAULT_MAX_SHARD_BYTES, Map.of("format", "pt"));
        }
        return out;
    }

    /**
     * Writes {@code src} with only the residual-stream channels {@code kept} (fp32) into {@code out}, sliced here by
     * hand (not by surgery): embedding and LM-head columns, norm entries, q/k/v/gate/up columns, o/down rows and
     * biases; config.json's hidden_size becomes kept.length (then hidden_size != heads x head_dim). Returns out.
     */
    public static Path sliceHidden(Path src, int[] kept, Path out) throws IOException {
        try (ModelDir md = ModelDir.open(src); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            ModelConfig c = md.config();
            TensorMap t = new TensorMap(md.checkpoint());
            cols(t, m, WeightNames.EMBED, kept);
            if (t.has(WeightNames.LM_HEAD)) {
                cols(t, m, WeightNames.LM_HEAD, kept);
            }
            rows(t, m, WeightNames.FINAL_NORM, kept);
            for (int i = 0; i < c.numLayers(); i++) {
                rows(t, m, WeightNames.inputNorm(i), kept);
                rows(t, m, WeightNames.postAttentionNorm(i), kept);
                for (String proj : new String[] {"q_proj", "k_proj", "v_proj"}) {
                    cols(t, m, WeightNames.attn(i, proj, "weight"), kept);
                }
                cols(t, m, WeightNames.mlp(i, "gate_proj", "weight"), kept);
                cols(t, m, WeightNames.mlp(i, "up_proj", "weight"), kept);
                rows(t, m, WeightNames.attn(i, "o_proj", "weight"), kept);
                rows(t, m, WeightNames.mlp(i, "down_proj", "weight"), kept);
                for (String b : new String[] {WeightNames.attn(i, "o_proj", "bias"), WeightNames.mlp(i, "down_proj", "bias")}) {
                    if (t.has(b)) {
                        rows(t, m, b, kept);
                    }
                }
            }
            ModelWriter.save(out, c.withHiddenSize(kept.length), t, DataType.FLOAT32, src, ModelWriter.DEFAULT_MAX_SHARD_BYTES,
                    Map.of("format", "pt"));
        }
        return out;
    }

    /** Every third channel of {@code d} goes (a third of the stream removed, spread over it). */
    public static int[] everyThirdRemoved(int d) {
        return java.util.stream.IntStream.range(0, d).filter(j -> j % 3 != 1).toArray();
    }

    private static NDArray gaussian(NDManager m, SplittableRandom rnd, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (0.05 * rnd.nextGaussian());
        }
        return m.create(v, new Shape(n));
    }

    /** Keeps rows {@code keep} of a [rows, cols] (or 1-D) tensor. */
    private static void rows(TensorMap t, NDManager m, String name, int[] keep) {
        Shape s = t.shape(name);
        float[] w = t.load(name, m).toFloatArray();
        int cols = s.dimension() == 1 ? 1 : (int) s.get(1);
        float[] out = new float[keep.length * cols];
        for (int r = 0; r < keep.length; r++) {
            System.arraycopy(w, keep[r] * cols, out, r * cols, cols);
        }
        t.put(name, m.create(out, s.dimension() == 1 ? new Shape(keep.length) : new Shape(keep.length, cols)));
    }

    /** Keeps columns {@code keep} of a [rows, cols] tensor. */
    private static void cols(TensorMap t, NDManager m, String name, int[] keep) {
        Shape s = t.shape(name);
        float[] w = t.load(name, m).toFloatArray();
        int rows = (int) s.get(0);
        int cols = (int) s.get(1);
        float[] out = new float[rows * keep.length];
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < keep.length; j++) {
                out[r * keep.length + j] = w[r * cols + keep[j]];
            }
        }
        t.put(name, m.create(out, new Shape(rows, keep.length)));
    }
}
