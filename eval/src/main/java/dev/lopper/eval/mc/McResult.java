package dev.lopper.eval.mc;

import com.fasterxml.jackson.databind.annotation.JsonDeserialize;
import com.fasterxml.jackson.databind.annotation.JsonSerialize;

import java.util.List;

/**
 * A multiple-choice task's accuracy as lm-evaluation-harness reports it: {@code acc} (argmax of the
 * log-likelihood), {@code acc_norm} (argmax of log-likelihood / the choice's length in UTF-8 bytes), each with the
 * standard error of the mean (sample standard deviation / sqrt(n), lm-eval's {@code mean_stderr}).
 *
 * @param predictions the acc choice of each example (compare runs and backends)
 */
public record McResult(String task, String data, String dataHash, int examples, double acc,
                       @JsonSerialize(using = NanAsNull.Writer.class) @JsonDeserialize(using = NanAsNull.Reader.class) double accStderr,
                       double accNorm,
                       @JsonSerialize(using = NanAsNull.Writer.class) @JsonDeserialize(using = NanAsNull.Reader.class) double accNormStderr, double seconds, List<Integer> predictions) {

    /** Standard error of the mean of 0/1 outcomes as lm-eval computes it (ddof = 1); NaN (JSON null, "n/a") below 2 outcomes. */
    public static double stderr(int[] outcomes) {
        int n = outcomes.length;
        if (n < 2) {
            return Double.NaN;
        }
        double mean = 0;
        for (int o : outcomes) {
            mean += o;
        }
        mean /= n;
        double ss = 0;
        for (int o : outcomes) {
            ss += (o - mean) * (o - mean);
        }
        return Math.sqrt(ss / (n - 1)) / Math.sqrt(n);
    }
}
