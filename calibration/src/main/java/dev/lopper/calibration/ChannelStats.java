package dev.lopper.calibration;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;

/**
 * Per-channel statistics of one activation over every calibration token, accumulated in fp64 sequence by
 * sequence: sum, sum of squares, mean and variance (Chan/Welford merges of per-sequence centred sums, so the
 * variance does not suffer from the cancellation of sumSq - n*mean^2), and FLAP's fluctuation recurrence.
 * From these, each paper's statistic is one line: Wanda's {@code scaler_row} = {@link #wandaScalerRow()},
 * FLAP's {@code baseline_inp} = {@link #mean()} and {@code fluc_inp} = {@link #flapFluctuation()}.
 */
public final class ChannelStats {
    private final int channels;
    private long sequences;
    private long tokens;
    private final double[] sum;
    private final double[] sumSq;
    private final double[] mean;
    private final double[] m2;
    private final double[] fluc;

    public ChannelStats(int channels) {
        this.channels = channels;
        this.sum = new double[channels];
        this.sumSq = new double[channels];
        this.mean = new double[channels];
        this.m2 = new double[channels];
        this.fluc = new double[channels];
    }

    /** Adds a chunk of sequences x [B, T, C]; the per-sequence reductions run in fp64 on x's device. */
    public void add(NDArray x) {
        long b = x.getShape().get(0);
        int t = (int) x.getShape().get(1);
        check(x.getShape().get(2));
        try (NDManager scope = x.getManager().newSubManager()) {
            NDArray x64 = x.toType(DataType.FLOAT64, true);
            x64.attach(scope);
            NDArray s = x64.sum(new int[] {1}); // [B, C]
            // [B, T, C] fp64 arrays are the largest here (8 bytes per activation, and each is fresh memory that the
            // kernel zero-fills): one square, then x64 itself is centred and squared in place; same values as
            // out-of-place sub/square, half the fresh memory
            NDArray sq = reduceSquares(x64);
            x64.subi(s.div(t).expandDims(1));
            x64.muli(x64);
            NDArray centred = x64.sum(new int[] {1});
            x64.close();
            double[] sAll = s.toDoubleArray();
            double[] sqAll = sq.toDoubleArray();
            double[] m2All = centred.toDoubleArray();
            for (int i = 0; i < b; i++) {
                addSequence(t, sAll, sqAll, m2All, i * channels);
            }
        }
    }

    /** sum over axis 1 of x^2, freeing the squared temporary at once. */
    private static NDArray reduceSquares(NDArray x) {
        try (NDArray sq = x.square()) {
            return sq.sum(new int[] {1});
        }
    }

    /**
     * Adds one sequence of {@code t} tokens from its per-channel sum, sum of squares and centred sum of squares
     * {@code sum((x - seqMean)^2)}, read at {@code offset}.
     */
    public void addSequence(int t, double[] seqSum, double[] seqSumSq, double[] seqM2, int offset) {
        long n0 = tokens;
        long n = n0 + t;
        long k = sequences + 1; // 1-based index of this sequence
        for (int c = 0; c < channels; c++) {
            double s = seqSum[offset + c];
            double seqMean = s / t;
            double delta = seqMean - mean[c];
            double newMean = mean[c] + delta * t / n;
            m2[c] += seqM2[offset + c] + delta * delta * (double) n0 * t / n;
            mean[c] = newMean;
            sum[c] += s;
            sumSq[c] += seqSumSq[offset + c];
            if (k >= 2) {
                // FLAP's BiasGPT recurrence (see docs/CRITERIA-NOTES.md §2): F_k = F_{k-1}(k-2)/(k-1)
                // + (1/k) sum_t (x_t - mu_k)^2, with mu_k the running mean including sequence k.
                double dev = seqMean - newMean;
                double ss = seqM2[offset + c] + t * dev * dev;
                fluc[c] = fluc[c] * (k - 2) / (k - 1) + ss / k;
            }
        }
        tokens = n;
        sequences = k;
    }

    /** Writes the whole state (a resumable calibration checkpoints it after each layer). */
    public void write(java.io.DataOutput out) throws java.io.IOException {
        out.writeInt(channels);
        out.writeLong(sequences);
        out.writeLong(tokens);
        for (double[] a : new double[][] {sum, sumSq, mean, m2, fluc}) {
            for (double v : a) {
                out.writeDouble(v);
            }
        }
    }

    /** Reads what {@link #write} wrote: the same statistics, bit for bit. */
    public static ChannelStats read(java.io.DataInput in) throws java.io.IOException {
        ChannelStats s = new ChannelStats(in.readInt());
        s.sequences = in.readLong();
        s.tokens = in.readLong();
        for (double[] a : new double[][] {s.sum, s.sumSq, s.mean, s.m2, s.fluc}) {
            for (int i = 0; i < a.length; i++) {
                a[i] = in.readDouble();
            }
        }
        return s;
    }

    private void check(long c) {
        if (c != channels) {
            throw new IllegalArgumentException("activation has " + c + " channels, these statistics " + channels);
        }
    }

    public int channels() {
        return channels;
    }

    public long sequences() {
        return sequences;
    }

    public long tokens() {
        return tokens;
    }

    /** sum_t x_t per channel. */
    public double[] sum() {
        return sum.clone();
    }

    /** sum_t x_t^2 per channel, i.e. ||X_j||_2^2. */
    public double[] sumOfSquares() {
        return sumSq.clone();
    }

    /** ||X_j||_2 per channel. */
    public double[] l2Norm() {
        double[] out = new double[channels];
        for (int c = 0; c < channels; c++) {
            out[c] = Math.sqrt(sumSq[c]);
        }
        return out;
    }

    /** Mean over all tokens per channel. */
    public double[] mean() {
        return mean.clone();
    }

    /** Population variance over all tokens (M2 / n) per channel. */
    public double[] variance() {
        double[] out = new double[channels];
        for (int c = 0; c < channels; c++) {
            out[c] = tokens == 0 ? 0 : m2[c] / tokens;
        }
        return out;
    }

    /** Wanda's {@code scaler_row}: sum_t x^2 divided by the number of sequences (not tokens), as coded. */
    public double[] wandaScalerRow() {
        double[] out = new double[channels];
        for (int c = 0; c < channels; c++) {
            out[c] = sequences == 0 ? 0 : sumSq[c] / sequences;
        }
        return out;
    }

    /** FLAP's {@code fluc_inp} as coded (about T times the per-token variance; 0 after one sequence). */
    public double[] flapFluctuation() {
        return fluc.clone();
    }
}
