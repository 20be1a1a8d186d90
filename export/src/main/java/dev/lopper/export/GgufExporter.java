package dev.lopper.export;

import dev.lopper.export.gguf.GgmlType;
import dev.lopper.export.gguf.GgufTokenizer;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;
import dev.lopper.export.gguf.GgufValue;
import dev.lopper.export.gguf.GgufWriter;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Writes a LLaMA-family model as a GGUF file for llama.cpp, following convert_hf_to_gguf.py: architecture
 * {@code llama} when every layer has the same shape, {@code deci} (per-layer INT32 arrays for head counts and
 * feed-forward length) when they differ. The q/k rows are permuted from HF's rotate-half layout to llama.cpp's
 * interleaved one, per layer with that layer's head counts. FLAP's o_proj/down_proj biases are written as
 * {@code attn_output.bias} / {@code ffn_down.bias}, which both architectures read. A layer whose attention or MLP
 * was pruned away entirely but keeps a bias (or an emptied MLP, which llama.cpp's deci graph would skip along with
 * the layer's attention output) is written as one zero head / one zero channel, which adds exactly the bias.
 *
 * <pre>{@code
 * GgufExporter.write(config, checkpoint, Path.of("model/tokenizer.json"), ExportDtype.Q8_0, Path.of("out/model.gguf"));
 * }</pre>
 */
public final class GgufExporter {
    public static final String FILE = "model.gguf";

    private final ModelConfig c;
    private final Weights weights;
    private final ExportDtype dtype;
    private final GgufWriter w = new GgufWriter();

    private GgufExporter(ModelConfig config, TensorSource source, ExportDtype dtype) {
        this.c = config;
        this.weights = new Weights(source);
        this.dtype = dtype;
    }

    /** Writes {@code file}; {@code tokenizerJson} is the model's tokenizer.json (required: llama.cpp needs a vocabulary). */
    public static void write(ModelConfig config, TensorSource source, Path tokenizerJson, ExportDtype dtype, Path file) throws IOException {
        check(config);
        if (tokenizerJson == null || !Files.exists(tokenizerJson)) {
            throw new IllegalArgumentException("GGUF export needs the model's tokenizer.json (not found: " + tokenizerJson + ")");
        }
        GgufExporter e = new GgufExporter(config, source, dtype);
        e.metadata();
        GgufTokenizer.write(tokenizerJson, config.vocabSize(), config.bosTokenId(), config.eosTokenId(), e.w);
        e.tensors();
        e.w.write(file);
    }

    /** Refuses what llama.cpp's llama/deci graphs would compute differently from Lopper. */
    static void check(ModelConfig c) {
        switch (c.family()) {
            case LLAMA, MISTRAL, QWEN2 -> { }
            default -> throw new IllegalArgumentException("GGUF export: model_type '" + c.family().modelType()
                    + "' is not supported; expected llama, mistral or qwen2");
        }
        if (c.slidingWindow() > 0 && c.slidingWindow() < c.maxPositionEmbeddings()) {
            throw new IllegalArgumentException("GGUF export: sliding_window " + c.slidingWindow() + " < max_position_embeddings "
                    + c.maxPositionEmbeddings() + "; llama.cpp's llama/deci graphs attend to the whole context");
        }
        String rope = c.ropeScaling().type();
        if (!rope.equals("default") && !rope.equals("linear") && !rope.equals("llama3")) {
            throw new IllegalArgumentException("GGUF export: rope_scaling type '" + rope + "' is not supported");
        }
    }

    /** True when the model needs the per-layer {@code deci} architecture. */
    static boolean perLayer(ModelConfig c) {
        return !c.isUniform() || c.layers().stream().anyMatch(s -> s.numHeads() == 0 || s.intermediateSize() == 0);
    }

    private String arch() {
        return perLayer(c) ? "deci" : "llama";
    }

    /** Heads written for layer i (1 for an emptied attention that keeps an o_proj bias). */
    private int heads(LayerShape s) {
        return s.numHeads() == 0 && s.oProjBias() ? 1 : s.numHeads();
    }

    private int kvHeads(LayerShape s) {
        return s.numHeads() == 0 && s.oProjBias() ? 1 : s.numKvHeads();
    }

    /** Channels written for layer i (1 zero channel for an emptied MLP). */
    private int ffn(LayerShape s) {
        return Math.max(1, s.intermediateSize());
    }

    private void metadata() {
        String a = arch();
        w.put("general.architecture", a);
        w.put("general.name", "lopper");
        w.put("general.file_type", GgufValue.u32(switch (dtype) {
            case F32 -> 0;
            case F16 -> 1;
            case Q8_0 -> 7;
            case BF16 -> 32;
        }));
        if (dtype == ExportDtype.Q8_0) {
            w.put("general.quantization_version", GgufValue.u32(2));
        }
        w.put(a + ".vocab_size", GgufValue.u32(c.vocabSize()));
        w.put(a + ".context_length", GgufValue.u32(c.maxPositionEmbeddings()));
        w.put(a + ".embedding_length", GgufValue.u32(c.hiddenSize()));
        w.put(a + ".block_count", GgufValue.u32(c.numLayers()));
        if (a.equals("deci")) {
            w.put(a + ".feed_forward_length", GgufValue.int32s(c.layers().stream().mapToInt(this::ffn).toArray()));
            w.put(a + ".attention.head_count", GgufValue.int32s(c.layers().stream().mapToInt(this::heads).toArray()));
            w.put(a + ".attention.head_count_kv", GgufValue.int32s(c.layers().stream().mapToInt(this::kvHeads).toArray()));
        } else {
            LayerShape s = c.layer(0);
            w.put(a + ".feed_forward_length", GgufValue.u32(s.intermediateSize()));
            w.put(a + ".attention.head_count", GgufValue.u32(s.numHeads()));
            w.put(a + ".attention.head_count_kv", GgufValue.u32(s.numKvHeads()));
        }
        w.put(a + ".attention.key_length", GgufValue.u32(c.headDim()));
        w.put(a + ".attention.value_length", GgufValue.u32(c.headDim()));
        w.put(a + ".rope.dimension_count", GgufValue.u32(c.headDim()));
        w.put(a + ".rope.freq_base", GgufValue.f32(c.ropeTheta()));
        if (c.ropeScaling().type().equals("linear")) {
            w.put(a + ".rope.scaling.type", "linear");
            w.put(a + ".rope.scaling.factor", GgufValue.f32(c.ropeScaling().factor()));
        }
        w.put(a + ".attention.layer_norm_rms_epsilon", GgufValue.f32(c.rmsNormEps()));
    }

    private void tensors() {
        int h = c.hiddenSize();
        int v = c.vocabSize();
        matrix("token_embd.weight", WeightNames.EMBED, v, h);
        vector("output_norm.weight", WeightNames.FINAL_NORM, h);
        if (weights.has(WeightNames.LM_HEAD)) {
            matrix("output.weight", WeightNames.LM_HEAD, v, h);
        } // tied: llama.cpp uses token_embd for the output, as the converter leaves it
        if (c.ropeScaling().type().equals("llama3")) {
            double[] base = dev.lopper.model.config.RopeScaling.NONE.inverseFrequencies(c.headDim(), c.ropeTheta());
            double[] scaled = c.ropeScaling().inverseFrequencies(c.headDim(), c.ropeTheta());
            float[] factors = new float[base.length];
            for (int i = 0; i < base.length; i++) {
                factors[i] = (float) (base[i] / scaled[i]); // ggml divides the frequency by the factor
            }
            w.tensor("rope_freqs.weight", GgmlType.F32, () -> factors, factors.length);
        }
        for (int i = 0; i < c.numLayers(); i++) {
            layer(i);
        }
    }

    private void layer(int i) {
        LayerShape s = c.layer(i);
        int h = c.hiddenSize();
        int d = c.headDim();
        String p = "blk." + i + ".";
        if (s.numHeads() > 0) {
            vector(p + "attn_norm.weight", WeightNames.inputNorm(i), h);
            int q = s.numHeads();
            int kv = s.numKvHeads();
            w.tensor(p + "attn_q.weight", matrixType(h), () -> permute(floats(WeightNames.attn(i, "q_proj", "weight"), (long) q * d, h), q, h), h, (long) q * d);
            w.tensor(p + "attn_k.weight", matrixType(h), () -> permute(floats(WeightNames.attn(i, "k_proj", "weight"), (long) kv * d, h), kv, h), h, (long) kv * d);
            matrix(p + "attn_v.weight", WeightNames.attn(i, "v_proj", "weight"), (long) kv * d, h);
            if (c.qkvBias()) {
                w.tensor(p + "attn_q.bias", GgmlType.F32, () -> permute(floats(WeightNames.attn(i, "q_proj", "bias"), (long) q * d), q, 1), (long) q * d);
                w.tensor(p + "attn_k.bias", GgmlType.F32, () -> permute(floats(WeightNames.attn(i, "k_proj", "bias"), (long) kv * d), kv, 1), (long) kv * d);
                vector(p + "attn_v.bias", WeightNames.attn(i, "v_proj", "bias"), (long) kv * d);
            }
            matrix(p + "attn_output.weight", WeightNames.attn(i, "o_proj", "weight"), h, (long) q * d);
        } else if (s.oProjBias()) {
            // one zero head: attention output is 0, so the block adds exactly the bias
            w.tensor(p + "attn_norm.weight", GgmlType.F32, () -> ones(h), h);
            for (String t : new String[] {"attn_q", "attn_k", "attn_v"}) {
                w.tensor(p + t + ".weight", matrixType(h), () -> new float[h * d], h, d);
            }
            w.tensor(p + "attn_output.weight", matrixType(d), () -> new float[h * d], d, h);
        }
        if (s.oProjBias()) {
            vector(p + "attn_output.bias", WeightNames.attn(i, "o_proj", "bias"), h);
        }
        if (s.intermediateSize() > 0) {
            int f = s.intermediateSize();
            vector(p + "ffn_norm.weight", WeightNames.postAttentionNorm(i), h);
            matrix(p + "ffn_gate.weight", WeightNames.mlp(i, "gate_proj", "weight"), f, h);
            matrix(p + "ffn_up.weight", WeightNames.mlp(i, "up_proj", "weight"), f, h);
            matrix(p + "ffn_down.weight", WeightNames.mlp(i, "down_proj", "weight"), h, f);
        } else {
            // one zero channel: silu(0) * 0 = 0, so the block adds exactly the bias (or nothing)
            w.tensor(p + "ffn_norm.weight", GgmlType.F32, () -> ones(h), h);
            w.tensor(p + "ffn_gate.weight", matrixType(h), () -> new float[h], h, 1);
            w.tensor(p + "ffn_up.weight", matrixType(h), () -> new float[h], h, 1);
            w.tensor(p + "ffn_down.weight", matrixType(1), () -> new float[h], 1, h);
        }
        if (s.downProjBias()) {
            vector(p + "ffn_down.bias", WeightNames.mlp(i, "down_proj", "bias"), h);
        }
    }

    /**
     * convert_hf_to_gguf.py's LlamaModel.permute for a [heads * headDim, cols] matrix (cols = 1 for a bias): within
     * each head, row {@code half * headDim/2 + j} moves to {@code 2j + half} (rotate-half pairs become adjacent).
     */
    static float[] permute(float[] x, int heads, int cols) {
        int rows = x.length / cols;
        int d = rows / heads;
        float[] out = new float[x.length];
        for (int hd = 0; hd < heads; hd++) {
            for (int half = 0; half < 2; half++) {
                for (int j = 0; j < d / 2; j++) {
                    int from = hd * d + half * (d / 2) + j;
                    int to = hd * d + 2 * j + half;
                    System.arraycopy(x, from * cols, out, to * cols, cols);
                }
            }
        }
        return out;
    }

    /** The type of a 2-D weight whose rows have {@code rowLength} elements: the dtype, F16 where Q8_0's 32 does not divide it. */
    private GgmlType matrixType(long rowLength) {
        return switch (dtype) {
            case F32 -> GgmlType.F32;
            case F16 -> GgmlType.F16;
            case BF16 -> GgmlType.BF16;
            case Q8_0 -> rowLength % 32 == 0 ? GgmlType.Q8_0 : GgmlType.F16;
        };
    }

    /** An HF [out, in] matrix, stored as is: GGUF dims (in, out). */
    private void matrix(String gguf, String hf, long out, long in) {
        w.tensor(gguf, matrixType(in), () -> floats(hf, out, in), in, out);
    }

    private void vector(String gguf, String hf, long n) {
        w.tensor(gguf, GgmlType.F32, () -> floats(hf, n), n);
    }

    private float[] floats(String name, long... shape) {
        ByteBuffer b = weights.get(name, shape);
        float[] f = new float[b.remaining() / 4];
        b.asFloatBuffer().get(f);
        return f;
    }

    private static float[] ones(int n) {
        float[] f = new float[n];
        Arrays.fill(f, 1f);
        return f;
    }
}
