package dev.lopper.eval;

/** Log-softmax of float logits rows in double precision, picking each row's target (for backends that return plain arrays). */
public final class LogSoftmax {
    private LogSoftmax() {
    }

    /**
     * @param logits [rows * vocab], row-major
     * @param row which row ([rows][vocab]) to read
     * @return log softmax(logits[row])[target]
     */
    public static double pick(float[] logits, int row, int vocab, long target) {
        int base = row * vocab;
        double max = Double.NEGATIVE_INFINITY;
        for (int v = 0; v < vocab; v++) {
            max = Math.max(max, logits[base + v]);
        }
        double sum = 0;
        for (int v = 0; v < vocab; v++) {
            sum += Math.exp(logits[base + v] - max);
        }
        return logits[base + (int) target] - max - Math.log(sum);
    }

    /** Index of a row's largest logit. */
    public static int argmax(float[] logits, int row, int vocab) {
        int base = row * vocab;
        int best = 0;
        for (int v = 1; v < vocab; v++) {
            if (logits[base + v] > logits[base + best]) {
                best = v;
            }
        }
        return best;
    }

    /** Per window, log p of each next token from logits [b, len, vocab]. */
    public static double[][] windows(float[] logits, long[][] windows, int vocab) {
        int len = windows[0].length;
        double[][] out = new double[windows.length][len - 1];
        for (int b = 0; b < windows.length; b++) {
            for (int t = 0; t < len - 1; t++) {
                out[b][t] = pick(logits, b * len + t, vocab, windows[b][t + 1]);
            }
        }
        return out;
    }
}
