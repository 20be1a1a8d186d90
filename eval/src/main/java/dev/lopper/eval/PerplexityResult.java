package dev.lopper.eval;

/**
 * A perplexity measurement and how it was made, so a report can be reproduced.
 *
 * @param perplexity exp(meanNll)
 * @param meanNll mean negative log-likelihood per predicted token, nats
 * @param predictedTokens tokens scored: windows x (seqLen - 1)
 * @param windows non-overlapping windows of seqLen tokens (the last partial window is dropped)
 * @param textTokens tokens in the whole text, BOS included
 */
public record PerplexityResult(String model, String text, int seqLen, int windows, long predictedTokens,
                               long textTokens, double meanNll, double perplexity, double seconds,
                               double tokensPerSecond, String device) {
}
