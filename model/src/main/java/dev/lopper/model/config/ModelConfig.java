package dev.lopper.model.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelFormatException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A model's {@code config.json}, as HF transformers reads it for LLaMA, Mistral, Qwen2, Qwen3 and Phi-3, plus Lopper's own
 * per-layer shapes ({@code lopper_layers}, see docs/FORMAT.md) for pruned models whose layers differ.
 *
 * @param family model family ({@code model_type})
 * @param vocabSize rows of the embedding and the LM head
 * @param hiddenSize model width (the residual stream's channels; hidden-dimension pruning makes it smaller)
 * @param headDim width of one attention head ({@code head_dim}, else hidden_size / num_attention_heads)
 * @param layers the shape of each decoder layer, in order
 * @param qkvBias whether q/k/v projections carry biases (Qwen2; LLaMA's {@code attention_bias})
 * @param slidingWindow Mistral's attention window in tokens, 0 for none
 * @param raw the JSON as read, so that fields Lopper does not use survive a save
 */
public record ModelConfig(Family family, int vocabSize, int hiddenSize, int headDim, List<LayerShape> layers,
                          int maxPositionEmbeddings, double rmsNormEps, double ropeTheta, RopeScaling ropeScaling,
                          boolean tieWordEmbeddings, boolean qkvBias, int slidingWindow, Integer bosTokenId,
                          Integer eosTokenId, ObjectNode raw) {

    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * Plausibility bound on {@code num_hidden_layers}, checked before the per-layer list is built: the largest
     * LLaMA-family models have about 130 layers, and a corrupt count (2^31-1) must not allocate one shape per
     * claimed layer. Counts below it are checked against the checkpoint's tensors by {@code WeightCheck}.
     */
    public static final int MAX_LAYERS = 1 << 16;

    public ModelConfig {
        layers = List.copyOf(layers);
    }

    public int numLayers() {
        return layers.size();
    }

    public LayerShape layer(int i) {
        return layers.get(i);
    }

    /** True when every layer has the same shape, so the standard HF fields describe the model exactly. */
    public boolean isUniform() {
        return layers.stream().distinct().count() <= 1;
    }

    public ModelConfig withLayers(List<LayerShape> newLayers) {
        return new ModelConfig(family, vocabSize, hiddenSize, headDim, newLayers, maxPositionEmbeddings, rmsNormEps,
                ropeTheta, ropeScaling, tieWordEmbeddings, qkvBias, slidingWindow, bosTokenId, eosTokenId, raw);
    }

    /** This config with the residual stream {@code hidden} channels wide (hidden-dimension pruning). */
    public ModelConfig withHiddenSize(int hidden) {
        return new ModelConfig(family, vocabSize, hidden, headDim, layers, maxPositionEmbeddings, rmsNormEps,
                ropeTheta, ropeScaling, tieWordEmbeddings, qkvBias, slidingWindow, bosTokenId, eosTokenId, raw);
    }

    /** This config with RMSNorm epsilon {@code eps}. */
    public ModelConfig withRmsNormEps(double eps) {
        return new ModelConfig(family, vocabSize, hiddenSize, headDim, layers, maxPositionEmbeddings, eps,
                ropeTheta, ropeScaling, tieWordEmbeddings, qkvBias, slidingWindow, bosTokenId, eosTokenId, raw);
    }

    /** Reads {@code dir/config.json} (or a config.json path). */
    public static ModelConfig load(Path path) {
        Path file = Files.isDirectory(path) ? path.resolve("config.json") : path;
        if (!Files.exists(file)) {
            throw ModelFormatException.file(file, "not found; a model directory needs config.json");
        }
        JsonNode root;
        try {
            root = JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw ModelFormatException.file(file, "not valid JSON: " + firstLine(e.getMessage()));
        }
        if (root == null || !root.isObject()) {
            throw ModelFormatException.file(file, "expected a JSON object");
        }
        return parse((ObjectNode) root, file);
    }

    /** Parses a config object; {@code file} only names the source in errors. */
    public static ModelConfig parse(ObjectNode root, Path file) {
        Fields f = new Fields(root, file);
        String modelType = f.string("model_type", null);
        Family family = Family.fromModelType(modelType);
        if (family == null) {
            throw ModelFormatException.field(file, "model_type", modelType == null ? "nothing" : "'" + modelType + "'",
                    "one of " + Family.supported());
        }
        String act = f.string("hidden_act", "silu");
        if (!act.equals("silu")) {
            throw ModelFormatException.field(file, "hidden_act", "'" + act + "'", "'silu' (SwiGLU MLP)");
        }
        if (f.bool("mlp_bias", false)) {
            throw ModelFormatException.field(file, "mlp_bias", true, "false (MLP biases on gate/up are not supported)");
        }
        int hidden = f.positiveInt("hidden_size");
        int inter = f.positiveInt("intermediate_size");
        int numLayers = f.positiveInt("num_hidden_layers");
        if (numLayers > MAX_LAYERS) {
            throw ModelFormatException.field(file, "num_hidden_layers", numLayers, "at most " + MAX_LAYERS
                    + " (the number of decoder layers; no LLaMA-family model has more)");
        }
        int heads = f.positiveInt("num_attention_heads");
        int kvHeads = root.has("num_key_value_heads") && !root.get("num_key_value_heads").isNull()
                ? f.positiveInt("num_key_value_heads") : heads;
        if (heads % kvHeads != 0) {
            throw ModelFormatException.field(file, "num_key_value_heads", kvHeads, "a divisor of num_attention_heads (" + heads + ")");
        }
        // Qwen3Config defaults head_dim to 128 rather than hidden_size / num_attention_heads
        int headDim = root.hasNonNull("head_dim") ? f.positiveInt("head_dim") : family == Family.QWEN3 ? 128 : hidden / heads;
        if (!root.hasNonNull("head_dim") && family != Family.QWEN3 && hidden % heads != 0) {
            throw ModelFormatException.field(file, "num_attention_heads", heads, "a divisor of hidden_size (" + hidden + ") or an explicit head_dim");
        }
        if (headDim % 2 != 0) {
            throw ModelFormatException.field(file, "head_dim", headDim, "an even number (RoPE rotates pairs)");
        }
        if (family == Family.QWEN3 && f.bool("use_sliding_window", false)) {
            throw ModelFormatException.field(file, "use_sliding_window", true, "false (Qwen3 sliding-window layers are not supported)");
        }
        double partialRotary = f.number("partial_rotary_factor", 1.0);
        if (partialRotary != 1.0) {
            throw ModelFormatException.field(file, "partial_rotary_factor", partialRotary, "1.0 (partial RoPE is not supported)");
        }
        // Phi-3 has no attention biases (its config has no attention_bias field)
        boolean attentionBias = family != Family.PHI3 && f.bool("attention_bias", false);
        boolean qkvBias = family == Family.QWEN2 || attentionBias;
        // LLaMA's attention_bias also puts a bias on o_proj; Qwen2 has none there.
        boolean oBias = family != Family.QWEN2 && attentionBias;
        List<LayerShape> layers = new ArrayList<>();
        JsonNode perLayer = root.get("lopper_layers");
        if (perLayer != null && !perLayer.isNull()) {
            if (!perLayer.isArray() || perLayer.size() != numLayers) {
                throw ModelFormatException.field(file, "lopper_layers", perLayer.isArray() ? perLayer.size() + " entries" : perLayer.getNodeType(),
                        "an array of " + numLayers + " layer shapes (num_hidden_layers)");
            }
            for (int i = 0; i < numLayers; i++) {
                if (!perLayer.get(i).isObject()) {
                    throw ModelFormatException.field(file, "lopper_layers[" + i + "]", perLayer.get(i).getNodeType(),
                            "an object with num_attention_heads, num_key_value_heads, intermediate_size");
                }
                Fields lf = new Fields((ObjectNode) perLayer.get(i), file, "lopper_layers[" + i + "].");
                int h = lf.nonNegativeInt("num_attention_heads");
                int kv = lf.nonNegativeInt("num_key_value_heads");
                int im = lf.nonNegativeInt("intermediate_size");
                if (kv == 0 ? h != 0 : h % kv != 0) {
                    throw ModelFormatException.field(file, "lopper_layers[" + i + "].num_key_value_heads", kv, "a divisor of num_attention_heads (" + h + ")");
                }
                layers.add(new LayerShape(h, kv, im, lf.bool("o_proj_bias", oBias), lf.bool("down_proj_bias", false)));
            }
        } else {
            for (int i = 0; i < numLayers; i++) {
                layers.add(new LayerShape(heads, kvHeads, inter, oBias, false));
            }
        }
        int slidingWindow = 0;
        if ((family == Family.MISTRAL || family == Family.PHI3) && root.hasNonNull("sliding_window")) {
            slidingWindow = f.positiveInt("sliding_window");
        }
        return new ModelConfig(family, f.positiveInt("vocab_size"), hidden, headDim, layers,
                root.hasNonNull("max_position_embeddings") ? f.positiveInt("max_position_embeddings") : 2048,
                f.number("rms_norm_eps", 1e-6), f.number("rope_theta", 10000.0), ropeScaling(root, file),
                f.bool("tie_word_embeddings", false), qkvBias, slidingWindow,
                f.optionalInt("bos_token_id"), f.optionalInt("eos_token_id"), root.deepCopy());
    }

    private static RopeScaling ropeScaling(ObjectNode root, Path file) {
        JsonNode rs = root.get("rope_scaling");
        if (rs == null || rs.isNull()) {
            return RopeScaling.NONE;
        }
        if (!rs.isObject()) {
            throw ModelFormatException.field(file, "rope_scaling", rs.getNodeType(), "an object or null");
        }
        Fields f = new Fields((ObjectNode) rs, file, "rope_scaling.");
        String field = rs.hasNonNull("rope_type") ? "rope_type" : "type";
        String type = f.string(field, "default");
        return switch (type) {
            case "default" -> RopeScaling.NONE;
            case "linear" -> new RopeScaling("linear", f.number("factor", Double.NaN), 0, 0, 0);
            case "llama3" -> new RopeScaling("llama3", f.number("factor", Double.NaN), f.number("low_freq_factor", Double.NaN),
                    f.number("high_freq_factor", Double.NaN), f.positiveInt("original_max_position_embeddings"));
            case "longrope", "su" -> throw ModelFormatException.field(file, "rope_scaling." + field, "'" + type + "'",
                    "one of default, linear, llama3 (Phi-3's long-context RoPE with short_factor/long_factor is not supported)");
            default -> throw ModelFormatException.field(file, "rope_scaling." + field, "'" + type + "'", "one of default, linear, llama3");
        };
    }

    /**
     * This config as config.json: the fields read, with the standard HF fields set from the layers. When layers
     * differ, {@code lopper_layers} holds each layer's shape and the standard fields hold the largest values.
     */
    public ObjectNode toJson() {
        ObjectNode out = raw.deepCopy();
        out.put("model_type", family.modelType());
        if (!out.has("architectures")) {
            out.putArray("architectures").add(family.architecture());
        }
        out.put("num_hidden_layers", layers.size());
        out.put("hidden_size", hiddenSize);
        if (rmsNormEps != f64(raw.get("rms_norm_eps"))) {
            out.put("rms_norm_eps", rmsNormEps); // only when changed: a config Lopper did not touch keeps its bytes
        }
        out.put("head_dim", headDim);
        out.put("tie_word_embeddings", tieWordEmbeddings);
        LayerShape first = layers.isEmpty() ? new LayerShape(0, 0, 0) : layers.get(0);
        boolean defaultBiases = layers.stream().allMatch(l -> l.oProjBias() == first.oProjBias() && !l.downProjBias())
                && (first.oProjBias() == (family != Family.QWEN2 && qkvBias));
        if (isUniform() && defaultBiases && first.numHeads() > 0) {
            out.put("num_attention_heads", first.numHeads());
            out.put("num_key_value_heads", first.numKvHeads());
            out.put("intermediate_size", first.intermediateSize());
            out.remove("lopper_layers");
        } else {
            out.put("num_attention_heads", layers.stream().mapToInt(LayerShape::numHeads).max().orElse(0));
            out.put("num_key_value_heads", layers.stream().mapToInt(LayerShape::numKvHeads).max().orElse(0));
            out.put("intermediate_size", layers.stream().mapToInt(LayerShape::intermediateSize).max().orElse(0));
            ArrayNode arr = out.putArray("lopper_layers");
            for (LayerShape l : layers) {
                ObjectNode o = arr.addObject();
                o.put("num_attention_heads", l.numHeads());
                o.put("num_key_value_heads", l.numKvHeads());
                o.put("intermediate_size", l.intermediateSize());
                o.put("o_proj_bias", l.oProjBias());
                o.put("down_proj_bias", l.downProjBias());
            }
        }
        return out;
    }

    private static double f64(JsonNode n) {
        return n == null || !n.isNumber() ? 1e-6 : n.doubleValue();
    }

    /** Typed access to JSON fields with errors naming file and field. */
    private record Fields(ObjectNode node, Path file, String prefix) {
        Fields(ObjectNode node, Path file) {
            this(node, file, "");
        }

        private JsonNode get(String name) {
            return node == null ? null : node.get(name);
        }

        int positiveInt(String name) {
            int v = nonNegativeInt(name);
            if (v == 0) {
                throw ModelFormatException.field(file, prefix + name, 0, "a positive integer");
            }
            return v;
        }

        int nonNegativeInt(String name) {
            JsonNode v = get(name);
            if (v == null || v.isNull()) {
                throw ModelFormatException.field(file, prefix + name, "nothing (missing)", "a non-negative integer");
            }
            if (!v.canConvertToInt() || !v.isIntegralNumber() || v.intValue() < 0) {
                throw ModelFormatException.field(file, prefix + name, v, "a non-negative integer");
            }
            return v.intValue();
        }

        Integer optionalInt(String name) {
            JsonNode v = get(name);
            if (v == null || v.isNull()) {
                return null;
            }
            if (v.isArray() && !v.isEmpty()) {
                v = v.get(0); // some configs list several EOS ids; the first is the one generation stops on
            }
            if (!v.isIntegralNumber()) {
                throw ModelFormatException.field(file, prefix + name, v, "an integer token id");
            }
            return v.intValue();
        }

        double number(String name, double dflt) {
            JsonNode v = get(name);
            if (v == null || v.isNull()) {
                if (Double.isNaN(dflt)) {
                    throw ModelFormatException.field(file, prefix + name, "nothing (missing)", "a number");
                }
                return dflt;
            }
            if (!v.isNumber()) {
                throw ModelFormatException.field(file, prefix + name, v, "a number");
            }
            return v.doubleValue();
        }

        boolean bool(String name, boolean dflt) {
            JsonNode v = get(name);
            if (v == null || v.isNull()) {
                return dflt;
            }
            if (!v.isBoolean()) {
                throw ModelFormatException.field(file, prefix + name, v, "true or false");
            }
            return v.booleanValue();
        }

        String string(String name, String dflt) {
            JsonNode v = get(name);
            if (v == null || v.isNull()) {
                return dflt;
            }
            if (!v.isTextual()) {
                throw ModelFormatException.field(file, prefix + name, v, "a string");
            }
            return v.textValue();
        }
    }

    private static String firstLine(String s) {
        return s == null ? "" : s.lines().findFirst().orElse("");
    }
}
