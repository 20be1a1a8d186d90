package dev.lopper.training.job;

import dev.lopper.model.util.Progress;
import dev.lopper.pruning.plan.PruningPlan;

import java.util.Locale;

/**
 * Never less (or more) than asked in silence, for the training jobs' plans: the asked ratio goes beside the achieved
 * one in the plan's result (and so in {@code --json}), and when they differ by more than
 * {@link PruningPlan#RATIO_TOLERANCE} one line says both and why, on the job's progress and in the plan.
 *
 * <pre>{@code
 * plan = AskedRatio.record(plan, 0.5, () -> "the method keeps the first int(0.1 L) and the last layer whole", progress);
 * }</pre>
 */
final class AskedRatio {
    private AskedRatio() {
    }

    /**
     * {@code plan} with {@code asked} beside its achieved ratio; {@code why} explains a gap past the tolerance (the
     * plan's own shortfall line, from its allocation, is kept when it has one).
     */
    static PruningPlan record(PruningPlan plan, double asked, java.util.function.Supplier<String> why, Progress progress) {
        PruningPlan.Result r = plan.result();
        if (r == null) {
            return plan;
        }
        String line = null;
        if (Math.abs(r.achievedRatio() - asked) > PruningPlan.RATIO_TOLERANCE) {
            line = r.shortfall() != null && r.requestedRatio() != null && r.requestedRatio() == asked ? r.shortfall()
                    : String.format(Locale.ROOT, "asked --ratio %.4f, achieved %.4f of %,d prunable parameters: %s", asked,
                            r.achievedRatio(), r.prunableParams(), why.get());
            progress.message("warning: " + line);
        }
        return plan.withResult(r.withRequested(asked, line));
    }
}
