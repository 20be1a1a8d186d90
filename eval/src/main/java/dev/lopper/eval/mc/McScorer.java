package dev.lopper.eval.mc;

import dev.lopper.eval.Evaluator;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.util.Progress;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Scores multiple-choice examples the way lm-evaluation-harness does for {@code output_type: multiple_choice}:
 * for each choice, the request is (context, " " + choice) (its default target delimiter); trailing spaces of the
 * context move to the continuation; continuation tokens = tokens(context + continuation) minus tokens(context);
 * too long inputs lose tokens on the left. One deviation: the context is encoded with the tokenizer's special tokens
 * (BOS), which lm-eval's HF model adds only with {@code add_bos_token=True}.
 *
 * <pre>{@code
 * McResult r = McScorer.score(ev, examples, "kjv-cloze", "fixtures/text/kjv-test.txt", hash);
 * System.out.println(r.acc() + " +- " + r.accStderr());
 * }</pre>
 */
public final class McScorer {
    public static final String TARGET_DELIMITER = " ";

    private McScorer() {
    }

    /** The log-likelihood of each choice of {@code e} (all choices in one batch, see {@link Evaluator#scoreContinuations}). */
    public static double[] logLikelihoods(Evaluator ev, McExample e) {
        Tokenizer tok = ev.tokenizer();
        int max = ev.config().maxPositionEmbeddings();
        int n = e.choices().size();
        long[][] contexts = new long[n][];
        long[][] continuations = new long[n][];
        for (int c = 0; c < n; c++) {
            String context = e.context(c);
            String continuation = TARGET_DELIMITER + e.choices().get(c);
            int spaces = context.length() - context.stripTrailing().length();
            if (spaces > 0) {
                continuation = context.substring(context.length() - spaces) + continuation;
                context = context.substring(0, context.length() - spaces);
            }
            long[] ctx = tok.encode(context);
            long[] whole = tok.encode(context + continuation);
            long[] cont = Arrays.copyOfRange(whole, Math.min(ctx.length, whole.length), whole.length);
            if (cont.length == 0) {
                throw new IllegalArgumentException("choice '" + e.choices().get(c) + "' encodes to no tokens");
            }
            long[] context2 = Arrays.copyOf(whole, whole.length - cont.length);
            if (whole.length > max) {
                // lm-eval keeps the last max_length + 1 tokens (the last is only predicted, never fed)
                int drop = whole.length - max;
                context2 = Arrays.copyOfRange(context2, Math.min(drop, context2.length - 1), context2.length);
            }
            contexts[c] = context2;
            continuations[c] = cont;
        }
        return ev.scoreContinuations(contexts, continuations);
    }

    public static McResult score(Evaluator ev, List<McExample> examples, String task, String data, String dataHash) {
        int n = examples.size();
        int[] acc = new int[n];
        int[] accNorm = new int[n];
        List<Integer> predictions = new ArrayList<>(n);
        try (Progress.Counter progress = Progress.start(task, n, "q")) {
            for (int i = 0; i < n; i++) {
                McExample e = examples.get(i);
                double[] ll = logLikelihoods(ev, e);
                double[] norm = new double[ll.length];
                for (int c = 0; c < ll.length; c++) {
                    norm[c] = ll[c] / e.choices().get(c).getBytes(StandardCharsets.UTF_8).length;
                }
                int pred = argmax(ll);
                predictions.add(pred);
                acc[i] = pred == e.label() ? 1 : 0;
                accNorm[i] = argmax(norm) == e.label() ? 1 : 0;
                progress.advance(1);
            }
            return new McResult(task, data, dataHash, n, mean(acc), McResult.stderr(acc), mean(accNorm), McResult.stderr(accNorm),
                    progress.elapsedSeconds(), predictions);
        }
    }

    /** First index of the largest value (numpy's argmax). */
    static int argmax(double[] v) {
        int best = 0;
        for (int i = 1; i < v.length; i++) {
            if (v[i] > v[best]) {
                best = i;
            }
        }
        return best;
    }

    private static double mean(int[] v) {
        return v.length == 0 ? Double.NaN : Arrays.stream(v).average().orElse(Double.NaN);
    }
}
