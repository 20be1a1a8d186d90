package dev.lopper.eval;

/**
 * Perplexity of one text under one preset, as a report records it.
 *
 * @param preset "llm-pruner", "wanda", "flap" or "custom"
 * @param window tokens per window
 * @param stride tokens between window starts (= window: non-overlapping, tail dropped)
 * @param data the text source
 * @param dataHash "sha256:..." of the source's bytes
 * @param textTokens tokens of the whole stream (BOS included)
 * @param windows forward passes
 * @param scoredTokens tokens whose NLL entered the mean
 * @param meanNll mean negative log-likelihood, nats
 */
public record PerplexityReport(String preset, int window, int stride, String data, String dataHash, long textTokens,
                               int windows, long scoredTokens, double meanNll, double perplexity, double seconds) {
}
