package dev.lopper.eval;

import dev.lopper.model.util.Progress;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Perplexity of one token stream through any {@link Evaluator}, windowed as a {@link PerplexityPreset} says.
 *
 * <pre>{@code
 * long[] ids = ev.tokenizer().encode(EvalText.read(text, "text", preset.joiner()));
 * PerplexityReport r = StreamPerplexity.evaluate(ev, ids, PerplexityPreset.LLM_PRUNER, 8, "kjv-test.txt", hash);
 * }</pre>
 */
public final class StreamPerplexity {
    private StreamPerplexity() {
    }

    /** A window of the stream: [start, start + length), scoring its positions from {@code firstScored} (>= 1). */
    record Window(int start, int length, int firstScored) {
    }

    /** The windows a preset cuts from a stream of {@code n} tokens. */
    static List<Window> windows(int n, int window, int stride) {
        List<Window> out = new ArrayList<>();
        if (stride == window) {
            for (int i = 0; i + window <= n; i += window) {
                out.add(new Window(i, window, 1));
            }
            return out;
        }
        int prevEnd = 0;
        for (int begin = 0; begin < n; begin += stride) {
            int end = Math.min(begin + window, n);
            int target = end - prevEnd;
            int len = end - begin;
            if (len >= 2) {
                out.add(new Window(begin, len, Math.max(1, len - target)));
            }
            prevEnd = end;
            if (end == n) {
                break;
            }
        }
        return out;
    }

    public static PerplexityReport evaluate(Evaluator ev, long[] ids, PerplexityPreset preset, int batch, String data, String dataHash) {
        if (batch < 1) {
            throw new IllegalArgumentException("--batch " + batch + ": expected at least 1");
        }
        int context = ev.config().maxPositionEmbeddings();
        int window = preset.window(context);
        int stride = preset.stride(context);
        List<Window> ws = windows(ids.length, window, stride);
        if (ws.isEmpty()) {
            throw new IllegalArgumentException(data + ": " + ids.length + " tokens, expected at least one window of " + window);
        }
        double nll = 0;
        long scored = 0;
        long total = ws.stream().mapToLong(Window::length).sum();
        try (Progress.Counter progress = Progress.start("perplexity", total, "tok")) {
            for (int i = 0; i < ws.size(); ) {
                int j = i;
                while (j < ws.size() && j - i < batch && ws.get(j).length() == ws.get(i).length()) {
                    j++;
                }
                long[][] batchIds = new long[j - i][];
                for (int k = i; k < j; k++) {
                    Window w = ws.get(k);
                    batchIds[k - i] = Arrays.copyOfRange(ids, w.start(), w.start() + w.length());
                }
                double[][] lp = ev.logProbs(batchIds);
                for (int k = i; k < j; k++) {
                    Window w = ws.get(k);
                    for (int p = w.firstScored(); p < w.length(); p++) {
                        nll -= lp[k - i][p - 1];
                        scored++;
                    }
                    progress.advance(w.length());
                }
                i = j;
            }
            double mean = nll / scored;
            return new PerplexityReport(preset.name(), window, stride, data, dataHash, ids.length, ws.size(), scored, mean,
                    Math.exp(mean), progress.elapsedSeconds());
        }
    }
}
