package dev.lopper.model.testing;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.TensorMap;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Writes tiny LLaMA-family models with random weights as real HF directories (config.json, safetensors, a
 * byte-level tokenizer.json) in milliseconds; Qwen3 with q_norm/k_norm, Phi-3 in its fused layout. Unit tests and brute-force checks of every criterion run on these.
 */
public final class RandomModels {
    /** What to generate. Start from {@link #llama()} and change fields with the with-ers. */
    public record Spec(Family family, int vocab, int hidden, int layers, int heads, int kvHeads, int headDim,
                       int intermediate, boolean tied, boolean qkvBias, int shards, DataType dtype, long seed,
                       double ropeTheta, String ropeScaling, int slidingWindow) {
        public Spec withFamily(Family f) {
            boolean bias = f == Family.QWEN2 || (f != Family.PHI3 && qkvBias);
            return new Spec(f, vocab, hidden, layers, heads, kvHeads, headDim, intermediate, tied, bias, shards, dtype, seed, ropeTheta, ropeScaling, f == Family.MISTRAL ? 16 : slidingWindow);
        }

        public Spec withHeads(int h, int kv) {
            return new Spec(family, vocab, hidden, layers, h, kv, headDim, intermediate, tied, qkvBias, shards, dtype, seed, ropeTheta, ropeScaling, slidingWindow);
        }

        public Spec withLayers(int n) {
            return new Spec(family, vocab, hidden, n, heads, kvHeads, headDim, intermediate, tied, qkvBias, shards, dtype, seed, ropeTheta, ropeScaling, slidingWindow);
        }

        public Spec withSize(int hiddenSize, int headDimension, int intermediateSize) {
            return new Spec(family, vocab, hiddenSize, layers, heads, kvHeads, headDimension, intermediateSize, tied, qkvBias, shards, dtype, seed, ropeTheta, ropeScaling, slidingWindow);
        }

        public Spec withTied(boolean t) {
            return new Spec(family, vocab, hidden, layers, heads, kvHeads, headDim, intermediate, t, qkvBias, shards, dtype, seed, ropeTheta, ropeScaling, slidingWindow);
        }

        public Spec withQkvBias(boolean b) {
            return new Spec(family, vocab, hidden, layers, heads, kvHeads, headDim, intermediate, tied, b, shards, dtype, seed, ropeTheta, ropeScaling, slidingWindow);
        }

        public Spec withShards(int n) {
            return new Spec(family, vocab, hidden, layers, heads, kvHeads, headDim, intermediate, tied, qkvBias, n, dtype, seed, ropeTheta, ropeScaling, slidingWindow);
        }

        public Spec withDtype(DataType t) {
            return new Spec(family, vocab, hidden, layers, heads, kvHeads, headDim, intermediate, tied, qkvBias, shards, t, seed, ropeTheta, ropeScaling, slidingWindow);
        }

        public Spec withSeed(long s) {
            return new Spec(family, vocab, hidden, layers, heads, kvHeads, headDim, intermediate, tied, qkvBias, shards, dtype, s, ropeTheta, ropeScaling, slidingWindow);
        }

        /** "llama3" gives LLaMA-3.1-style rope scaling. */
        public Spec withRopeScaling(String type) {
            return new Spec(family, vocab, hidden, layers, heads, kvHeads, headDim, intermediate, tied, qkvBias, shards, dtype, seed, ropeTheta, type, slidingWindow);
        }
    }

    /** 2 layers, hidden 64, 4 heads / 2 KV heads of 16, intermediate 96, vocab 300, untied, F32. */
    public static Spec llama() {
        return new Spec(Family.LLAMA, 300, 64, 2, 4, 2, 16, 96, false, false, 1, DataType.FLOAT32, 42, 10000.0, null, 0);
    }

    private RandomModels() {
    }

    /**
     * Writes a small training text for these models to {@code file}: {@code lines} lines of one sentence with 17
     * verse numbers, so that a few training steps visibly lower its loss.
     */
    public static void writeTrainingText(Path file, int lines) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < lines; i++) {
            sb.append("In the beginning God created the heaven and the earth. Verse ").append(i % 17).append(".\n");
        }
        Files.writeString(file, sb.toString());
    }

    /** Writes the model described by {@code spec} into {@code dir} and returns its config. */
    public static ModelConfig write(Path dir, Spec spec) throws IOException {
        ObjectNode json = configJson(spec);
        ModelConfig config = ModelConfig.parse(json, dir.resolve("config.json"));
        Files.createDirectories(dir);
        Path tok = Files.createTempDirectory("lopper-tok");
        try (NDManager m = NDManager.newBaseManager(ai.djl.Device.cpu())) {
            SplittableRandom rnd = new SplittableRandom(spec.seed());
            TensorMap t = new TensorMap(null);
            Map<String, NDArray> tensors = new LinkedHashMap<>();
            int h = spec.hidden();
            tensors.put(WeightNames.EMBED, gaussian(m, rnd, 0.5, 0, spec.vocab(), h));
            for (int i = 0; i < spec.layers(); i++) {
                LayerShape s = config.layer(i);
                int q = s.numHeads() * spec.headDim();
                int kv = s.numKvHeads() * spec.headDim();
                double in = 1 / Math.sqrt(h);
                tensors.put(WeightNames.inputNorm(i), gaussian(m, rnd, 0.1, 1, h));
                tensors.put(WeightNames.attn(i, "q_proj", "weight"), gaussian(m, rnd, in, 0, q, h));
                tensors.put(WeightNames.attn(i, "k_proj", "weight"), gaussian(m, rnd, in, 0, kv, h));
                tensors.put(WeightNames.attn(i, "v_proj", "weight"), gaussian(m, rnd, in, 0, kv, h));
                if (spec.qkvBias()) {
                    tensors.put(WeightNames.attn(i, "q_proj", "bias"), gaussian(m, rnd, 0.1, 0, q));
                    tensors.put(WeightNames.attn(i, "k_proj", "bias"), gaussian(m, rnd, 0.1, 0, kv));
                    tensors.put(WeightNames.attn(i, "v_proj", "bias"), gaussian(m, rnd, 0.1, 0, kv));
                }
                if (spec.family().hasQkNorm()) {
                    tensors.put(WeightNames.qNorm(i), gaussian(m, rnd, 0.1, 1, spec.headDim()));
                    tensors.put(WeightNames.kNorm(i), gaussian(m, rnd, 0.1, 1, spec.headDim()));
                }
                tensors.put(WeightNames.attn(i, "o_proj", "weight"), gaussian(m, rnd, 1 / Math.sqrt(q), 0, h, q));
                if (s.oProjBias()) {
                    tensors.put(WeightNames.attn(i, "o_proj", "bias"), gaussian(m, rnd, 0.1, 0, h));
                }
                tensors.put(WeightNames.postAttentionNorm(i), gaussian(m, rnd, 0.1, 1, h));
                tensors.put(WeightNames.mlp(i, "gate_proj", "weight"), gaussian(m, rnd, in, 0, s.intermediateSize(), h));
                tensors.put(WeightNames.mlp(i, "up_proj", "weight"), gaussian(m, rnd, in, 0, s.intermediateSize(), h));
                tensors.put(WeightNames.mlp(i, "down_proj", "weight"), gaussian(m, rnd, 1 / Math.sqrt(s.intermediateSize()), 0, h, s.intermediateSize()));
            }
            tensors.put(WeightNames.FINAL_NORM, gaussian(m, rnd, 0.1, 1, h));
            if (!spec.tied()) {
                tensors.put(WeightNames.LM_HEAD, gaussian(m, rnd, in(h), 0, spec.vocab(), h));
            }
            tensors.forEach(t::put);
            long total = tensors.values().stream().mapToLong(a -> a.size() * spec.dtype().getNumOfBytes()).sum();
            long shardBytes = spec.shards() <= 1 ? Long.MAX_VALUE : (total + spec.shards() - 1) / spec.shards();
            Files.writeString(tok.resolve("tokenizer.json"), ByteTokenizer.json(spec.vocab()));
            ModelWriter.save(dir, config, t, spec.dtype(), tok, shardBytes, Map.of("format", "pt"));
        } finally {
            Files.deleteIfExists(tok.resolve("tokenizer.json"));
            Files.deleteIfExists(tok);
        }
        return ModelConfig.load(dir);
    }

    private static double in(int fanIn) {
        return 1 / Math.sqrt(fanIn);
    }

    private static NDArray gaussian(NDManager m, SplittableRandom rnd, double std, double mean, long... shape) {
        float[] v = new float[Math.toIntExact(new Shape(shape).size())];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (mean + std * rnd.nextGaussian());
        }
        return m.create(v, new Shape(shape));
    }

    static ObjectNode configJson(Spec s) {
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.putArray("architectures").add(s.family().architecture());
        c.put("model_type", s.family().modelType());
        c.put("vocab_size", s.vocab());
        c.put("hidden_size", s.hidden());
        c.put("intermediate_size", s.intermediate());
        c.put("num_hidden_layers", s.layers());
        c.put("num_attention_heads", s.heads());
        c.put("num_key_value_heads", s.kvHeads());
        c.put("head_dim", s.headDim());
        c.put("hidden_act", "silu");
        c.put("max_position_embeddings", 256);
        c.put("rms_norm_eps", 1e-5);
        c.put("rope_theta", s.ropeTheta());
        c.put("tie_word_embeddings", s.tied());
        if (s.family() == Family.LLAMA || s.family() == Family.QWEN3) {
            c.put("attention_bias", s.qkvBias());
        }
        if (s.family() == Family.QWEN3) {
            // as Qwen3's config.json files carry them
            c.put("use_sliding_window", false);
            c.putNull("sliding_window");
            c.put("max_window_layers", s.layers());
            c.put("attention_dropout", 0.0);
        }
        if (s.family() == Family.PHI3) {
            // as Phi-3's config.json files carry them (Phi-3-mini-4k: rope_scaling null, no partial rotary)
            c.put("original_max_position_embeddings", 256);
            c.put("resid_pdrop", 0.0);
            c.put("embd_pdrop", 0.0);
            c.put("attention_dropout", 0.0);
            c.put("pad_token_id", 0);
        }
        if (s.slidingWindow() > 0) {
            c.put("sliding_window", s.slidingWindow());
        }
        if ("llama3".equals(s.ropeScaling())) {
            ObjectNode r = c.putObject("rope_scaling");
            r.put("rope_type", "llama3");
            r.put("factor", 8.0);
            r.put("low_freq_factor", 1.0);
            r.put("high_freq_factor", 4.0);
            r.put("original_max_position_embeddings", 32);
        } else {
            c.putNull("rope_scaling");
        }
        c.put("bos_token_id", 1);
        c.put("eos_token_id", 2);
        c.put("torch_dtype", s.dtype() == DataType.BFLOAT16 ? "bfloat16" : s.dtype() == DataType.FLOAT16 ? "float16" : "float32");
        return c;
    }
}
