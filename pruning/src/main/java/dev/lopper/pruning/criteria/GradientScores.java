package dev.lopper.pruning.criteria;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

import java.util.ArrayList;
import java.util.List;
import ai.djl.ndarray.types.DataType;
import dev.lopper.calibration.gradient.LayerParam;
import dev.lopper.model.LayerWeights;

/**
 * What the gradient criteria (LLM-Pruner, GBLM) share: which linear weights enter a structured score and along which
 * axis a structure cuts them, and the fp64 reductions of a per-element score to per-row / per-column sums.
 */
final class GradientScores {
    /** The seven linear weights of a decoder layer, the ones both papers score. */
    static final LayerParam[] LINEARS = {LayerParam.Q, LayerParam.K, LayerParam.V, LayerParam.O, LayerParam.GATE,
            LayerParam.UP, LayerParam.DOWN};

    private GradientScores() {
    }

    /**
     * Whether a structure cuts {@code p}'s input columns (o_proj, down_proj: Torch-Pruning's in-channels) rather than
     * its output rows (q/k/v/gate/up: out-channels).
     */
    static boolean cutsColumns(LayerParam p) {
        return p == LayerParam.O || p == LayerParam.DOWN;
    }

    /** {@code w} as fp64, attached to {@code scope} (a fresh copy: the layer's fp32 array is left as it is). */
    static NDArray f64(NDArray w, NDManager scope) {
        NDArray a = w.toType(DataType.FLOAT64, true);
        a.attach(scope);
        return a;
    }

    /** {@code a} attached to {@code scope} (so the layer's statistics manager does not collect temporaries). */
    static NDArray in(NDArray a, NDManager scope) {
        a.attach(scope);
        return a;
    }

    /** fp64 bytes of one row block in {@link #rowBlocks} (16 MiB). */
    static final long BLOCK_BYTES = 16L << 20;

    /**
     * Row ranges of {@code w} (its first axis) of about {@link #BLOCK_BYTES} in fp64 each; a single whole range for
     * a vector. Scores formed block by block keep their temporaries small whatever the parameter's size.
     */
    static List<long[]> rowBlocks(NDArray w) {
        return rowBlocks(w, BLOCK_BYTES);
    }

    /** {@link #rowBlocks(NDArray)} with blocks of about {@code blockBytes} fp64 bytes (at least one row). */
    static List<long[]> rowBlocks(NDArray w, long blockBytes) {
        long rows = w.getShape().dimension() == 0 ? 1 : w.getShape().get(0);
        long perRow = Math.max(1, w.getShape().dimension() <= 1 ? 1 : w.size() / Math.max(1, rows));
        long step = w.getShape().dimension() <= 1 ? Math.max(1, rows) : Math.max(1, blockBytes / (8 * perRow));
        List<long[]> out = new ArrayList<>(); // {from, to}
        for (long r = 0; r < rows; r += step) {
            out.add(new long[] {r, Math.min(rows, r + step)});
        }
        return out;
    }

    /**
     * Adds a row block's {@link #perIndex} into {@code into}: for a column cut (o_proj, down_proj) the block's column
     * sums are added; for a row cut the block's row sums are written at its rows.
     */
    static void addPerIndex(NDArray block, LayerParam p, long firstRow, double[] into) {
        double[] part = perIndex(block, p);
        if (cutsColumns(p)) {
            for (int j = 0; j < part.length; j++) {
                into[j] += part[j];
            }
        } else {
            System.arraycopy(part, 0, into, (int) firstRow, part.length);
        }
    }

    /** Per structure index of {@code p}: the sum over the cut axis' other dimension of {@code s} [out, in]. */
    static double[] perIndex(NDArray s, LayerParam p) {
        return s.sum(new int[] {cutsColumns(p) ? 0 : 1}).toDoubleArray();
    }

    /** {@code w}'s array of {@code p}, or null when the layer has none (an emptied module). */
    static NDArray weight(LayerWeights w, LayerParam p) {
        NDArray a = p.of(w);
        return a == null || a.size() == 0 ? null : a;
    }
}
