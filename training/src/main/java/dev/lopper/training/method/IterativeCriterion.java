package dev.lopper.training.method;

import dev.lopper.training.job.ScheduleRequest;

import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.Pruner;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.criteria.Scores;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Any one-shot criterion run iteratively ({@code --iterative N}, and LLM-Pruner's {@code --iterative-steps N}):
 * Torch-Pruning's linear schedule (step k of N prunes to {@code (k / N) x ratio}), every step re-scoring the current
 * model with the criterion exactly as {@code lopper prune} would score it (same calibration windows, settings and
 * paper defaults; {@link Pruner#scoreOnly}), and {@code trainStepsPerStep} LoRA steps between prune steps (none
 * after the last). N = 1 is the one-shot prune.
 *
 * <pre>{@code
 * ScheduleMethod m = new IterativeCriterion(request);   // request.prune().criterion() = "llm-pruner", iterations 4
 * }</pre>
 */
public final class IterativeCriterion implements ScheduleMethod {
    private final ScheduleRequest r;
    private Allocation.Options allocation;

    public IterativeCriterion(ScheduleRequest r) {
        if (r.iterations() == null) {
            throw new IllegalArgumentException("--method " + r.prune().criterion() + " is a one-shot criterion: give --iterative N "
                    + "(prune steps) to run it on the schedule engine");
        }
        this.r = r;
    }

    @Override
    public String name() {
        return r.prune().criterion();
    }

    @Override
    public Map<String, String> settings() {
        Map<String, String> s = new LinkedHashMap<>();
        s.put("iterative", r.iterations() + " (user)");
        s.put("schedule", "linear (Torch-Pruning's iterative_steps)");
        s.put("calibration", "new windows each step: seed + step - 1 (hf_prune.py draws new examples each step)");
        s.put("train_steps_per_step", r.trainStepsPerStep() + (r.trainStepsPerStep() > 0 ? " (user)" : " (none)"));
        return s;
    }

    @Override
    public List<Phase> phases() {
        double[] ratios = RatioSchedule.linear(r.prune().ratio(), r.iterations());
        List<Phase> p = new ArrayList<>();
        for (int k = 0; k < ratios.length; k++) {
            p.add(new Phase(ratios[k], k == ratios.length - 1 ? 0 : r.trainStepsPerStep()));
        }
        return p;
    }

    @Override
    public Allocation.Options allocation(int layers) {
        if (allocation == null) {
            throw new IllegalStateException("allocation is known after the first score()");
        }
        return allocation;
    }

    @Override
    public Scores score(StepContext c) throws IOException {
        PruneRequest p = r.prune();
        // new calibration windows every step, as hf_prune.py draws get_examples(...) anew in each iterative step; from
        // (seed, step) rather than one running RNG, so that a resumed run draws the same (step 1: the one-shot's)
        PruneRequest here = p.toBuilder().applyPlan(null).out(null).planOut(null).overwrite(false).seed(p.seed() + c.step() - 1)
                .device(c.device()).progress(c.progress()).build();
        Pruner.Scored s = Pruner.scoreOnly(c.config(), c.weights(), c.tokenizer(), here);
        String strategy = s.allocation().strategy();
        if (!strategy.equals("uniform") && !strategy.equals("global")) {
            // the engine gives removed units the score -infinity; a strategy that standardizes scores per layer
            // (adaptive, al-mm) or budgets layers from block scores (cfsp-blocks) would read that as data
            throw new IllegalArgumentException("--allocation " + strategy + ": scheduled pruning supports uniform and global "
                    + "allocation (give --allocation uniform or global)");
        }
        if (c.step() == 1) {
            c.progress().message("settings: " + s.settings().toJson());
        }
        allocation = s.allocation();
        return s.scores();
    }
}
