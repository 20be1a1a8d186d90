package dev.lopper.training.job;

import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.util.Progress;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.plan.PruningPlan;

import java.util.Locale;

/**
 * Never less (or more) than asked in silence, for the training jobs' plans: the asked ratio goes beside the achieved
 * one in the plan's result (and so in {@code --json}), and when they differ by more than
 * {@link PruningPlan#RATIO_TOLERANCE} (over the pruned layers, or over the whole model when the method keeps layers
 * whole) one line says both and why, on the job's progress and in the plan.
 *
 * <pre>{@code
 * plan = AskedRatio.record(plan, 0.5, config, () -> "the method keeps the first int(0.1 L) and the last layer whole", progress);
 * }</pre>
 */
final class AskedRatio {
    private AskedRatio() {
    }

    /**
     * {@code plan} with {@code asked} beside its achieved ratio; {@code why} explains a gap past the tolerance (the
     * plan's own shortfall line, from its allocation, is kept when it has one).
     */
    static PruningPlan record(PruningPlan plan, double asked, ModelConfig original, java.util.function.Supplier<String> why,
                              Progress progress) {
        PruningPlan.Result r = plan.result();
        if (r == null) {
            return plan;
        }
        // the ratio over every layer's prunable parameters: layers a method keeps whole count as kept
        double whole = Allocation.result(original, plan.resolve(original), true, true, false, 0, 0).achievedRatio();
        String line = null;
        if (Math.abs(r.achievedRatio() - asked) > PruningPlan.RATIO_TOLERANCE) {
            line = r.shortfall() != null && r.requestedRatio() != null && r.requestedRatio() == asked ? r.shortfall()
                    : String.format(Locale.ROOT, "asked --ratio %.4f, achieved %.4f of %,d prunable parameters: %s", asked,
                            r.achievedRatio(), r.prunableParams(), why.get());
        } else if (Math.abs(whole - asked) > PruningPlan.RATIO_TOLERANCE) {
            line = String.format(Locale.ROOT, "asked --ratio %.4f: %.4f of the pruned layers' prunable parameters, %.4f of the whole "
                    + "model's: %s", asked, r.achievedRatio(), whole, why.get());
        }
        if (line != null) {
            progress.message("warning: " + line);
        }
        return plan.withResult(r.withRequested(asked, line));
    }
}
