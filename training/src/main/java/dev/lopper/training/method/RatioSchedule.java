package dev.lopper.training.method;

/**
 * The per-step target ratios of an iterative prune: each value is the cumulative fraction of the ORIGINAL
 * model's prunable parameters removed after that step, so the last step reaches the requested ratio.
 *
 * <pre>{@code
 * double[] r = RatioSchedule.linear(0.5, 4);                 // 0.125, 0.25, 0.375, 0.5 (Torch-Pruning)
 * double s = RatioSchedule.cubic(120, 1000, 0.1, 0.1, 0, 0.5); // LoRAPrune's sparsity at step 120
 * }</pre>
 */
public final class RatioSchedule {
    private RatioSchedule() {
    }

    /**
     * Torch-Pruning's linear schedule ({@code linear_scheduler}, used by LLM-Pruner's {@code --iterative_steps}):
     * step k of n (1-based) reaches {@code (k / n) * ratio}.
     */
    public static double[] linear(double ratio, int steps) {
        if (steps < 1) {
            throw new IllegalArgumentException("--iterative " + steps + ": expected at least 1 step");
        }
        double[] r = new double[steps];
        for (int k = 1; k <= steps; k++) {
            // as Torch-Pruning computes it ((i / float(steps)) * pruning_ratio): the last step is ratio exactly
            r[k - 1] = (double) k / steps * ratio;
        }
        return r;
    }

    /**
     * LoRAPrune's cubic schedule ({@code loraprune/utils.py::schedule_sparsity_ratio}): {@code init} until
     * {@code warmup x total} steps, {@code fin} after {@code total - cooldown x total}, in between
     * {@code fin + (init - fin) (1 - (t - w) / (total - w - c))^3}.
     */
    public static double cubic(int step, int total, double warmup, double cooldown, double init, double fin) {
        if (step <= warmup * total) {
            return init;
        }
        if (step > total - cooldown * total) {
            return fin;
        }
        double w = warmup * total;
        double span = (cooldown + warmup) * total;
        double mul = 1 - (step - w) / (total - span);
        return fin + (init - fin) * mul * mul * mul;
    }
}
