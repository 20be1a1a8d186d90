package dev.lopper.eval;

import java.util.Locale;

/**
 * How a paper computes perplexity: window length, stride and how documents are joined into one token stream.
 * <ul>
 *   <li>{@code llm-pruner}: LLM-Pruner's {@code LLMPruner/evaluator/ppl.py}: documents joined with "\n\n", one
 *       token stream, non-overlapping windows of 128, the tail dropped, exp(mean NLL of every window's tokens 1..127).</li>
 *   <li>{@code wanda} (= {@code flap}): Wanda's {@code lib/eval.py} {@code eval_ppl_wikitext} (FLAP uses the same):
 *       documents joined with " ", non-overlapping windows of the model's context length ({@code model.seqlen}),
 *       the tail dropped; its exp(sum of window mean NLL x seqlen / (windows x seqlen)) equals exp(mean NLL).</li>
 *   <li>any window and stride: {@code stride == window} is the same non-overlapping protocol; {@code stride < window}
 *       is the strided sliding window of HF's perplexity guide (each window scores only its last
 *       {@code end - previous end} tokens, the tail window kept).</li>
 * </ul>
 *
 * <pre>{@code
 * PerplexityPreset p = PerplexityPreset.parse("llm-pruner");     // or new PerplexityPreset("custom", 512, 256, "\n\n")
 * int window = p.window(model.config().maxPositionEmbeddings());
 * }</pre>
 *
 * @param window tokens per window; 0 = the model's context length
 * @param stride tokens between window starts; 0 = the window (non-overlapping)
 * @param joiner what goes between documents of a JSONL file or a directory
 */
public record PerplexityPreset(String name, int window, int stride, String joiner) {
    public static final PerplexityPreset LLM_PRUNER = new PerplexityPreset("llm-pruner", 128, 0, "\n\n");
    public static final PerplexityPreset WANDA = new PerplexityPreset("wanda", 0, 0, " ");

    public PerplexityPreset {
        if (window < 0 || window == 1) {
            throw new IllegalArgumentException("--window " + window + ": expected at least 2 tokens");
        }
        if (stride < 0) {
            throw new IllegalArgumentException("--stride " + stride + ": expected a positive number of tokens");
        }
    }

    /** "llm-pruner", "wanda" or "flap". */
    public static PerplexityPreset parse(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "llm-pruner", "llmpruner" -> LLM_PRUNER;
            case "wanda", "flap" -> new PerplexityPreset(name.toLowerCase(Locale.ROOT), 0, 0, " ");
            default -> throw new IllegalArgumentException("--ppl-preset " + name + ": unknown; expected llm-pruner, wanda or flap");
        };
    }

    /** The window for a model with context length {@code context}. */
    public int window(int context) {
        return window == 0 ? context : window;
    }

    /** The stride for a model with context length {@code context}. */
    public int stride(int context) {
        int w = window(context);
        if (stride > w) {
            throw new IllegalArgumentException("--stride " + stride + ": longer than the window " + w + " (tokens would be skipped)");
        }
        return stride == 0 ? w : stride;
    }
}
