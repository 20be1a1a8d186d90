package dev.lopper.model;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/** A model's {@code tokenizer.json}, run by DJL's binding of HF tokenizers (the same Rust code as HF's). */
public final class Tokenizer implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final HuggingFaceTokenizer hf;
    private final Path file;

    private Tokenizer(HuggingFaceTokenizer hf, Path file) {
        this.hf = hf;
        this.file = file;
    }

    /** Loads {@code dir/tokenizer.json} (or a tokenizer.json path). */
    public static Tokenizer load(Path path) {
        Path file = Files.isDirectory(path) ? path.resolve("tokenizer.json") : path;
        if (!Files.exists(file)) {
            throw ModelFormatException.file(file, "not found; Lopper needs the HF tokenizer.json next to config.json");
        }
        checkStructure(file);
        try {
            // No truncation or padding: perplexity windows are cut by Lopper, not by the tokenizer.
            HuggingFaceTokenizer hf = HuggingFaceTokenizer.newInstance(file,
                    Map.of("addSpecialTokens", "true", "truncation", "false", "padding", "false", "maxLength", "-1"));
            return new Tokenizer(hf, file);
        } catch (IOException | RuntimeException e) {
            throw ModelFormatException.file(file, "not a valid HF tokenizer.json: " + firstLine(e.getMessage()));
        }
    }

    /** tokenizer.json files above this size are refused before parsing (large vocabularies take tens of MB). */
    private static final long MAX_BYTES = 512L * 1024 * 1024;

    /**
     * Checks in Java what the native tokenizer would otherwise be first to see: that the file is JSON (not
     * truncated) with a {@code model} object, so that those errors are one clear line.
     */
    private static void checkStructure(Path file) {
        JsonNode root;
        try {
            if (Files.size(file) > MAX_BYTES) {
                throw ModelFormatException.file(file, Files.size(file) + " bytes, expected a tokenizer.json of at most " + MAX_BYTES);
            }
            root = JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw ModelFormatException.file(file, "not valid JSON: " + firstLine(e.getMessage()));
        }
        JsonNode model = root == null ? null : root.get("model");
        if (model == null || !model.isObject()) {
            throw ModelFormatException.file(file, "expected an HF tokenizer.json: a JSON object with a \"model\" object");
        }
    }

    private static String firstLine(String s) {
        return s == null ? "(no message)" : s.lines().findFirst().orElse("");
    }

    public Path file() {
        return file;
    }

    /** Token ids of {@code text}, with the special tokens the tokenizer's post-processor adds (e.g. BOS). */
    public long[] encode(String text) {
        return hf.encode(text, true, false).getIds();
    }

    /** Token ids of {@code text} without special tokens. */
    public long[] encodePlain(String text) {
        return hf.encode(text, false, false).getIds();
    }

    public String decode(long[] ids) {
        return hf.decode(ids, true);
    }

    @Override
    public void close() {
        hf.close();
    }
}
