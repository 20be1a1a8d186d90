package dev.lopper.eval;

import dev.lopper.model.Tokenizer;
import dev.lopper.model.config.ModelConfig;

import java.nio.file.Path;

/**
 * A language model as evaluation sees it, whatever form it takes: a Lopper model directory, an ONNX export or a
 * TorchScript export ({@link dev.lopper.eval.backend.Backends#open} picks the backend from what a path holds).
 * Perplexity, multiple choice and speed are written once against this interface.
 *
 * <pre>{@code
 * try (Evaluator ev = Backends.open(Path.of("work/pruned-onnx"), Device.cpu())) {
 *     long[] ids = ev.tokenizer().encode("In the beginning God created");
 *     double[][] lp = ev.logProbs(new long[][] {ids});          // log p(ids[t+1] | ids[..t])
 *     double ll = ev.scoreContinuation(ctx, cont);                // sum of log p(cont | ctx)
 * }
 * }</pre>
 */
public interface Evaluator extends AutoCloseable {
    /** "lopper", "onnx", "onnx-kv" or "torchscript". */
    String backend();

    /** The directory the model was loaded from. */
    Path modelDir();

    /** The model's config.json (every export carries one). */
    ModelConfig config();

    Tokenizer tokenizer();

    /** Where it computes, in words ("cpu", "gpu(0)", "onnxruntime cpu"). */
    String device();

    /**
     * Log-probabilities of each window's next tokens: {@code [w][t] = log p(windows[w][t+1] | windows[w][0..t])},
     * {@code t < length - 1}. All windows have the same length.
     */
    double[][] logProbs(long[][] windows);

    /** Sum of the log-probabilities of {@code continuation}'s tokens given {@code context} (non-empty) and each other. */
    default double scoreContinuation(long[] context, long[] continuation) {
        long[] all = new long[context.length + continuation.length];
        System.arraycopy(context, 0, all, 0, context.length);
        System.arraycopy(continuation, 0, all, context.length, continuation.length);
        double[] lp = logProbs(new long[][] {all})[0];
        double sum = 0;
        for (int i = context.length - 1; i < all.length - 1; i++) {
            sum += lp[i];
        }
        return sum;
    }

    /**
     * {@link #scoreContinuation} for several pairs in one forward pass: the sequences are right-padded with token 0 to
     * the longest, which a causal model never attends to from earlier positions.
     */
    default double[] scoreContinuations(long[][] contexts, long[][] continuations) {
        int n = contexts.length;
        int len = 0;
        for (int i = 0; i < n; i++) {
            len = Math.max(len, contexts[i].length + continuations[i].length);
        }
        long[][] batch = new long[n][len];
        for (int i = 0; i < n; i++) {
            System.arraycopy(contexts[i], 0, batch[i], 0, contexts[i].length);
            System.arraycopy(continuations[i], 0, batch[i], contexts[i].length, continuations[i].length);
        }
        double[][] lp = logProbs(batch);
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            int end = contexts[i].length + continuations[i].length;
            for (int t = contexts[i].length - 1; t < end - 1; t++) {
                out[i] += lp[i][t];
            }
        }
        return out;
    }

    /**
     * Greedy decoding of {@code steps} tokens after {@code prompt}, timed: the first forward pass (the prompt) and
     * the following steps apart.
     */
    DecodeTiming decode(long[] prompt, int steps);

    /** Whether {@link #decode} keeps a KV cache (otherwise each step reruns the whole sequence). */
    boolean kvCache();

    @Override
    void close();

    /**
     * @param prefillSeconds time of the forward pass over the prompt (producing the first new token)
     * @param decodeSeconds time of the remaining {@code steps - 1} steps
     * @param tokens the prompt followed by the generated tokens
     */
    record DecodeTiming(double prefillSeconds, double decodeSeconds, int steps, long[] tokens) {
    }
}
