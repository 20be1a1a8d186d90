package dev.lopper.eval.report;

/**
 * Speed and size of a model in one backend.
 *
 * @param prefillTokens tokens per timed prefill (one sequence)
 * @param prefillTokensPerSecond prefill tokens / s (median of the timed runs, after one warm-up)
 * @param decodeTokens tokens generated per timed run (greedy, batch 1)
 * @param decodeTokensPerSecond generated tokens after the first / their time
 * @param decodeKvCache whether decoding kept a KV cache (TorchScript and plain ONNX rerun the sequence)
 * @param peakRssBytes peak resident memory of the whole process so far (VmHWM), -1 where unknown
 */
public record SpeedReport(int prefillTokens, double prefillTokensPerSecond, int decodeTokens, double decodeTokensPerSecond,
                          boolean decodeKvCache, long peakRssBytes) {
}
