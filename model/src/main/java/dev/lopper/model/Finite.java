package dev.lopper.model;

import ai.djl.ndarray.NDArray;

/**
 * NaN/Inf detection for weights and activations, cheap enough to run on every loaded weight and every layer
 * output: one sum per array (NaN and Inf both survive a sum), and only when that sum is not finite a max and a
 * min to tell NaN from Inf (and to rule out a sum of huge finite values that merely overflowed).
 */
public final class Finite {
    private Finite() {
    }

    /** "NaN" or "Inf" when {@code a} holds such a value, else null. */
    public static String problem(NDArray a) {
        if (a.size() == 0 || !a.getDataType().isFloating()) {
            return null;
        }
        try (NDArray sum = a.sum()) {
            if (Float.isFinite(sum.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).getFloat())) {
                return null;
            }
        }
        // torch's max/min propagate NaN
        try (NDArray max = a.max(); NDArray min = a.min()) {
            float hi = max.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).getFloat();
            float lo = min.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).getFloat();
            if (Float.isNaN(hi) || Float.isNaN(lo)) {
                return "NaN";
            }
            return Float.isInfinite(hi) || Float.isInfinite(lo) ? "Inf" : null;
        }
    }

    /**
     * Throws when a layer's output [windows, T, hidden] holds NaN or Inf, naming the layer and the first bad window.
     *
     * @param what how windows are counted in the message, e.g. "calibration window"
     * @param firstWindow the index of the first window of {@code out} in the whole run
     */
    public static void checkLayerOutput(int layer, NDArray out, String what, long firstWindow) {
        String p = problem(out);
        if (p == null) {
            return;
        }
        long window = firstWindow;
        for (long b = 0; b < out.getShape().get(0); b++) {
            try (NDArray one = out.get(b)) {
                String q = problem(one);
                if (q != null) {
                    p = q;
                    window = firstWindow + b;
                    break;
                }
            }
        }
        throw new ModelFormatException("layer " + layer + " output holds " + p + " (" + what + " " + window + ")");
    }
}
