package dev.lopper.training.method;

import dev.lopper.training.job.ScheduleRequest;

import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.Pruner;
import dev.lopper.pruning.allocation.AdaptPrunerAllocation;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.allocation.LayerImportance;
import dev.lopper.pruning.criteria.Scores;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * {@code --method adapt-pruner}: Adapt-Pruner's Adapt-Accel (Pan et al. 2025, arXiv 2502.03460; official
 * {@code research4pan/AdaptPruner}, docs/CRITERIA-NOTES.md §10) on the schedule engine. Step k prunes to
 * {@code min(k x step-ratio, ratio)} of the original prunable parameters: it re-measures every layer's importance
 * (1 - cos of its input and output) on the CURRENT model, moves each layer's sparsity by the step's increment minus
 * {@code 0.02 x normalized importance} ({@link AdaptPrunerAllocation}), removes the lowest units of the within-layer
 * criterion ({@code --criterion}, default the paper's LLM-Pruner Taylor {@code param_first}) and trains
 * {@code --train-steps-per-step N} optimizer steps (LoRA, merged) after every step, the last included, as the
 * official scripts train after every stage.
 *
 * <pre>{@code
 * lopper prune MODEL --method adapt-pruner --ratio 0.5 --step-ratio 0.05 --train-steps-per-step 1 \
 *     --calib calib.txt --train-data train.txt --out DIR
 * }</pre>
 */
public final class AdaptPrunerMethod implements ScheduleMethod {
    public static final String NAME = "adapt-pruner";
    /** The paper's "about 5%" at a time (the released scripts: 20 stages). */
    public static final double DEFAULT_STEP_RATIO = 0.05;
    /** The released scripts' within-layer criterion: LLM-Pruner's Taylor, param_first. */
    public static final String DEFAULT_CRITERION = "llm-pruner";
    /** Calibration windows of the released scripts ({@code --num_examples 512 --taylor_seq_len 64}). */
    static final int SAMPLES = LayerImportance.DEFAULT_SAMPLES;
    static final int SEQ_LEN = LayerImportance.DEFAULT_SEQ_LEN;

    private final ScheduleRequest r;
    private final String criterion;
    private final Map<String, String> criterionOptions;
    private final double stepRatio;
    private final Map<String, String> settings = new LinkedHashMap<>();

    public AdaptPrunerMethod(ScheduleRequest r) {
        this.r = r;
        Map<String, String> o = new LinkedHashMap<>(r.prune().criterionOptions());
        String c = o.remove("criterion");
        String step = o.remove("step-ratio");
        this.criterion = c != null ? c : DEFAULT_CRITERION;
        this.stepRatio = step != null ? parse(step) : DEFAULT_STEP_RATIO;
        boolean paperTaylor = criterion.equals("llm-pruner") && !o.containsKey("taylor");
        if (paperTaylor) {
            o.put("taylor", "param_first"); // the scripts' --taylor param_first (also the criterion's default now; kept explicit: it is the paper's setting)
        }
        this.criterionOptions = o;
        if (r.iterations() != null) {
            throw new IllegalArgumentException("--iterative: --method adapt-pruner has its own schedule; give --step-ratio instead");
        }
        if (r.steps() != null && r.trainStepsPerStep() > 0) {
            throw new IllegalArgumentException("--steps and --train-steps-per-step: give one (--steps T shares T training steps out over the prune steps)");
        }
        if (r.prune().allocation() != null && !r.prune().allocation().equals(NAME)) {
            throw new IllegalArgumentException("--allocation " + r.prune().allocation() + ": --method adapt-pruner allocates by layer importance (adapt-pruner)");
        }
        settings.put("criterion", criterion + (c != null ? " (user)" : " (paper)") + " " + criterionOptions);
        settings.put("step_ratio", stepRatio + (step != null ? " (user)" : " (paper)"));
        settings.put("amplitude", AdaptPrunerAllocation.DEFAULT_AMPLITUDE + " (paper)");
        settings.put("train_steps_per_step", r.steps() != null ? r.steps() + " in all (user)"
                : r.trainStepsPerStep() + (r.trainStepsPerStep() > 0 ? " (user)" : " (none)"));
        settings.put("training", "LoRA, merged after every step (the paper trains all parameters)");
    }

    private static double parse(String s) {
        try {
            double v = Double.parseDouble(s);
            if (v > 0 && v < 1) {
                return v;
            }
        } catch (NumberFormatException e) {
            // not a number: the same one-line error as a number out of range
        }
        throw new IllegalArgumentException("--step-ratio " + s + ": expected a number in (0, 1)");
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public Map<String, String> settings() {
        return settings;
    }

    /**
     * Cumulative ratios step-ratio, 2 x step-ratio, ... up to ratio; training after each (the last included):
     * {@code --train-steps-per-step N} steps, or {@code --steps T} in all, shared out evenly (the first steps take
     * the remainder), so that a run can be given the same training budget as one-shot pruning + recovery.
     */
    @Override
    public List<Phase> phases() {
        double ratio = r.prune().ratio();
        int n = Math.max(1, (int) Math.ceil(ratio / stepRatio - 1e-9));
        List<Phase> p = new ArrayList<>();
        for (int k = 1; k <= n; k++) {
            int train = r.steps() == null ? r.trainStepsPerStep() : r.steps() / n + (k <= r.steps() % n ? 1 : 0);
            p.add(new Phase(k == n ? ratio : k * stepRatio, train));
        }
        return p;
    }

    @Override
    public Allocation.Options allocation(int layers) {
        PruneRequest p = r.prune();
        return new Allocation.Options(p.ratio(), p.targets(), NAME, p.headUnit(), null, null,
                p.keepFirst() != null ? p.keepFirst() : 0, p.keepLast() != null ? p.keepLast() : 0);
    }

    /** The criterion's scores of the current model, with its layer importances measured on it (Pruner.scoreOnly). */
    @Override
    public Scores score(StepContext c) throws IOException {
        PruneRequest p = r.prune();
        Allocation.Options a = allocation(c.original().numLayers());
        PruneRequest here = p.toBuilder().criterion(criterion).options(criterionOptions).allocation(NAME)
                .headRatio(null).channelRatio(null).keepFirst(a.keepFirst()).keepLast(a.keepLast())
                .samples(p.samples() != null ? p.samples() : SAMPLES).seqLen(p.seqLen() != null ? p.seqLen() : SEQ_LEN)
                .applyPlan(null).out(null).planOut(null).overwrite(false).device(c.device()).progress(c.progress()).build();
        Pruner.Scored s = Pruner.scoreOnly(c.config(), c.weights(), c.tokenizer(), here);
        if (s.scores().layers() == null) {
            throw new IllegalStateException("adapt-pruner: no layer importance was measured");
        }
        c.progress().message(String.format(Locale.ROOT, "step %d: layer importance %s", c.step(),
                java.util.Arrays.toString(java.util.Arrays.stream(s.scores().layers()).map(v -> Math.round(v * 10) / 10.0).toArray())));
        return s.scores();
    }
}
