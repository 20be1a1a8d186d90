package dev.lopper.training.loop;

import dev.lopper.calibration.CalibrationData;
import dev.lopper.model.Tokenizer;

import java.nio.file.Path;
import java.util.Arrays;

/**
 * Training and validation windows for causal-LM recovery. Training windows are cut at seeded random offsets from
 * the training stream ({@link CalibrationData#sample}: the same seed gives the same windows, and asking for more
 * windows keeps the first ones); validation windows are consecutive, non-overlapping windows of a separate text, or,
 * without one, of the last {@code valFraction} of the training text, which training then never reads.
 *
 * <pre>{@code
 * TrainingData d = TrainingData.load(Path.of("fixtures/text/kjv-train.txt"), Path.of("fixtures/text/kjv-valid.txt"),
 *         tokenizer, 800, 16, 256, 0.05, 42);
 * }</pre>
 *
 * @param train [windows][seqLen], consumed in order (window k of the run is train[k])
 * @param validation [windows][seqLen]; empty: the run is not validated (Compresso's runs)
 */
public record TrainingData(long[][] train, long[][] validation) {
    public TrainingData {
        if (train.length == 0) {
            throw new IllegalArgumentException("training needs at least one training window");
        }
    }

    /** Training windows only: a run without validation. */
    public static TrainingData trainOnly(long[][] windows) {
        return new TrainingData(windows, new long[0][]);
    }

    /**
     * @param val a separate validation text, or null to hold out the tail of {@code data}
     * @param trainWindows windows the whole run reads (steps x accumulation x micro-batch)
     * @param valWindows at most this many validation windows
     */
    public static TrainingData load(Path data, Path val, Tokenizer tokenizer, int trainWindows, int valWindows, int seqLen,
                                    double valFraction, long seed) {
        long[] stream = CalibrationData.tokenStream(data, tokenizer, "text", "--train-data");
        long[] valStream;
        if (val != null) {
            valStream = CalibrationData.tokenStream(val, tokenizer, "text", "--val-data");
        } else {
            int cut = (int) (stream.length * (1 - valFraction));
            valStream = Arrays.copyOfRange(stream, cut, stream.length);
            stream = Arrays.copyOf(stream, cut);
        }
        return of(stream, valStream, trainWindows, valWindows, seqLen, seed);
    }

    /** Windows from token streams already made. */
    public static TrainingData of(long[] trainStream, long[] valStream, int trainWindows, int valWindows, int seqLen, long seed) {
        if (trainStream.length < seqLen + 1) {
            throw new IllegalArgumentException("--train-data: has " + trainStream.length + " training tokens; --train-seq-len " + seqLen
                    + " needs at least " + (seqLen + 1));
        }
        if (valStream.length < seqLen) {
            throw new IllegalArgumentException("--val-data: has " + valStream.length + " tokens; --train-seq-len " + seqLen + " needs at least " + seqLen);
        }
        long[][] train = CalibrationData.sample(trainStream, trainWindows, seqLen, seed);
        int n = Math.min(valWindows, valStream.length / seqLen);
        long[][] v = new long[n][];
        for (int i = 0; i < n; i++) {
            v[i] = Arrays.copyOfRange(valStream, i * seqLen, (i + 1) * seqLen);
        }
        return new TrainingData(train, v);
    }
}
