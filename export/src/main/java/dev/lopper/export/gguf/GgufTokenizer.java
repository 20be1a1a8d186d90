package dev.lopper.export.gguf;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelFormatException;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Maps an HF byte-level BPE {@code tokenizer.json} to llama.cpp's {@code tokenizer.ggml.*} keys, as
 * convert_hf_to_gguf.py does: model {@code gpt2}, the pre-tokenizer name llama.cpp knows the regex by, tokens in id
 * order (ids the vocabulary lacks up to {@code vocab_size} become {@code [PAD<i>]}, type UNUSED), token types
 * (CONTROL for special added tokens, USER_DEFINED for other added tokens, NORMAL otherwise), merges as "a b",
 * BOS/EOS ids and whether to add them (from the post-processor's template).
 *
 * <pre>{@code
 * GgufTokenizer.write(Path.of("model/tokenizer.json"), 4096, 1, 2, ggufWriter);
 * }</pre>
 */
public final class GgufTokenizer {
    static final int NORMAL = 1;
    static final int CONTROL = 3;
    static final int USER_DEFINED = 4;
    static final int UNUSED = 5;

    /** llama.cpp's names for the pre-tokenizer regexes of tokenizer.json Split pre-tokenizers it ships. */
    private static final Map<String, String> SPLIT_REGEXES = Map.of(
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe",
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2");

    private GgufTokenizer() {
    }

    /**
     * Adds the tokenizer keys to {@code w}.
     *
     * @param vocabSize the model's vocab_size (rows of the embedding); the token list is padded to it
     * @param bos the BOS id from config.json, or null
     * @param eos the EOS id from config.json, or null
     */
    public static void write(Path tokenizerJson, int vocabSize, Integer bos, Integer eos, GgufWriter w) throws IOException {
        JsonNode t = new ObjectMapper().readTree(tokenizerJson.toFile());
        JsonNode model = t.path("model");
        if (!"BPE".equals(model.path("type").asText())) {
            throw ModelFormatException.file(tokenizerJson, "model.type is '" + model.path("type").asText()
                    + "'; the GGUF export supports byte-level BPE tokenizers only");
        }
        String pre = preTokenizer(tokenizerJson, t.path("pre_tokenizer"));
        TreeMap<Integer, String> byId = new TreeMap<>();
        model.path("vocab").fields().forEachRemaining(e -> byId.put(e.getValue().asInt(), e.getKey()));
        Map<Integer, Integer> addedType = new TreeMap<>();
        for (JsonNode a : t.path("added_tokens")) {
            byId.put(a.path("id").asInt(), a.path("content").asText());
            addedType.put(a.path("id").asInt(), a.path("special").asBoolean() ? CONTROL : USER_DEFINED);
        }
        if (!byId.isEmpty() && byId.lastKey() >= vocabSize) {
            throw ModelFormatException.file(tokenizerJson, "has token id " + byId.lastKey() + ", but vocab_size is " + vocabSize);
        }
        List<String> tokens = new ArrayList<>(vocabSize);
        int[] types = new int[vocabSize];
        for (int i = 0; i < vocabSize; i++) {
            String s = byId.get(i);
            tokens.add(s != null ? s : "[PAD" + i + "]");
            types[i] = s == null ? UNUSED : addedType.getOrDefault(i, NORMAL);
        }
        List<String> merges = new ArrayList<>();
        for (JsonNode m : model.path("merges")) {
            merges.add(m.isArray() ? m.get(0).asText() + " " + m.get(1).asText() : m.asText());
        }
        w.put("tokenizer.ggml.model", "gpt2");
        w.put("tokenizer.ggml.pre", pre);
        w.put("tokenizer.ggml.tokens", GgufValue.strings(tokens));
        w.put("tokenizer.ggml.token_type", GgufValue.int32s(types));
        w.put("tokenizer.ggml.merges", GgufValue.strings(merges));
        if (bos != null) {
            w.put("tokenizer.ggml.bos_token_id", GgufValue.u32(bos));
        }
        if (eos != null) {
            w.put("tokenizer.ggml.eos_token_id", GgufValue.u32(eos));
        }
        List<String> single = new ArrayList<>();
        for (JsonNode p : t.path("post_processor").path("single")) {
            single.add(p.has("SpecialToken") ? p.path("SpecialToken").path("id").asText() : "$seq");
        }
        String bosText = bos != null ? byId.get(bos) : null;
        String eosText = eos != null ? byId.get(eos) : null;
        w.put("tokenizer.ggml.add_bos_token", GgufValue.bool(!single.isEmpty() && single.get(0).equals(bosText)));
        w.put("tokenizer.ggml.add_eos_token", GgufValue.bool(single.size() > 1 && single.get(single.size() - 1).equals(eosText)));
    }

    /** llama.cpp's pre-tokenizer name for tokenizer.json's {@code pre_tokenizer}. */
    static String preTokenizer(Path file, JsonNode pre) {
        if ("ByteLevel".equals(pre.path("type").asText()) && pre.path("use_regex").asBoolean(true)) {
            return "gpt-2";
        }
        if ("Sequence".equals(pre.path("type").asText())) {
            for (JsonNode p : pre.path("pretokenizers")) {
                String regex = p.path("pattern").path("Regex").asText(null);
                if ("Split".equals(p.path("type").asText()) && regex != null && SPLIT_REGEXES.containsKey(regex)) {
                    return SPLIT_REGEXES.get(regex);
                }
            }
        }
        throw ModelFormatException.file(file, "pre_tokenizer " + pre + " is not one the GGUF export maps; expected "
                + "ByteLevel (gpt-2) or a Split with the LLaMA-3 or Qwen2 regex");
    }
}
