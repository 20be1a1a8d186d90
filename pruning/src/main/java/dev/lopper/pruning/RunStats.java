package dev.lopper.pruning;

import dev.lopper.pruning.plan.PruningPlan;


/**
 * What a pruning run cost and achieved.
 *
 * <pre>{@code
 * RunStats s = result.stats();
 * System.out.printf("%.4f achieved in %.1f s%n", s.achievedRatio(), s.seconds());
 * }</pre>
 *
 * @param seconds wall time of the whole run
 * @param calibrationTokens calibration tokens per layer (0 without calibration)
 * @param calibrationSeconds time of the calibration pass
 * @param calibrationLayers layers the calibration pass streamed
 * @param peakRssBytes peak resident memory of the process (VmHWM), or -1 where unknown
 * @param counts parameters before/after, prunable, removed and the achieved ratio
 * @param afterSurgery what ran after surgery ("none" when nothing)
 * @param afterSurgeryParams parameters added after surgery (FLAP's compensation biases), not counted in
 *                           {@code counts}
 */
public record RunStats(double seconds, long calibrationTokens, double calibrationSeconds, int calibrationLayers,
                       long peakRssBytes, PruningPlan.Result counts, String afterSurgery, long afterSurgeryParams) {

    /** Removed / prunable parameters. */
    public double achievedRatio() {
        return counts.achievedRatio();
    }

    /** Peak resident set size of this process (VmHWM in /proc/self/status), or -1 where unavailable. */
    public static long peakRss() {
        return dev.lopper.model.util.ProcessMemory.bytes("VmHWM");
    }
}
