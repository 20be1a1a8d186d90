package dev.lopper.model;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/** A model's {@code tokenizer.json}, run by DJL's binding of HF tokenizers (the same Rust code as HF's). */
public final class Tokenizer implements AutoCloseable {
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
        try {
            // No truncation or padding: perplexity windows are cut by Lopper, not by the tokenizer.
            HuggingFaceTokenizer hf = HuggingFaceTokenizer.newInstance(file,
                    Map.of("addSpecialTokens", "true", "truncation", "false", "padding", "false", "maxLength", "-1"));
            return new Tokenizer(hf, file);
        } catch (IOException | RuntimeException e) {
            throw ModelFormatException.file(file, "not a valid HF tokenizer.json: " + e.getMessage());
        }
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
