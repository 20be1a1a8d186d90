package dev.lopper.training.method;

import dev.lopper.training.loop.Checkpoints;
import dev.lopper.training.loop.ParamGroup;
import dev.lopper.training.loop.TrainOptions;

import dev.lopper.training.job.ScheduleRequest;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.training.lora.LoraAdapters;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * LoRAPrune ({@code aim-uofa/LoRAPrune}, {@code --method lora-prune}): structures ranked by the LoRA-estimated
 * gradient importance ({@link LoraPruneImportance}), averaged over training steps ({@code 0.9 s + 0.1 s_now} from
 * zeros, a step with a NaN skipped), pruned every {@code prune-freq} (10) steps to the cubic schedule's ratio
 * (10% warm-up, 10% cool-down), per layer uniformly ({@code int(units x ratio)}, the official {@code local_prune}),
 * the first {@code int(0.1 L)} layers and the last layer kept. Deviations from the official code: docs/CRITERIA.md.
 *
 * <pre>{@code
 * lopper prune MODEL --method lora-prune --ratio 0.5 --train-data FILE --steps 200 --out DIR
 * }</pre>
 */
public final class LoraPrune implements ScheduleMethod {
    public static final String NAME = "lora-prune";
    /** The official trainer's {@code prune_freq}, warm-up and cool-down fractions and moving average. */
    public static final int PRUNE_FREQ = 10;
    public static final double WARMUP = 0.1;
    public static final double COOLDOWN = 0.1;
    public static final double BETA = 0.9;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final ScheduleRequest r;
    private final int steps;
    private final int freq;
    /** The moving average of the importance, on the current model's units (null before the first step). */
    private UnitScores importance;

    public LoraPrune(ScheduleRequest r) {
        this.r = r;
        if (r.steps() == null) {
            throw new IllegalArgumentException("--method lora-prune trains while it prunes: give --steps N (optimizer steps)");
        }
        this.steps = r.steps();
        String f = r.prune().criterionOptions().get("prune-freq");
        this.freq = f == null ? PRUNE_FREQ : Integer.parseInt(f);
        if (steps < 1 || freq < 1) {
            throw new IllegalArgumentException("--steps and --prune-freq must be positive");
        }
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public Map<String, String> settings() {
        Map<String, String> s = new LinkedHashMap<>();
        s.put("steps", steps + " (user)");
        s.put("prune_freq", freq + (r.prune().criterionOptions().containsKey("prune-freq") ? " (user)" : " (paper)"));
        s.put("schedule", "cubic, warm-up " + WARMUP + ", cool-down " + COOLDOWN + " (paper)");
        s.put("moving_average", "0.9 s + 0.1 s_now from zeros (paper)");
        s.put("allocation", "uniform per layer, int(units x ratio) (paper: local_prune)");
        s.put("keep_first", (r.prune().keepFirst() != null ? r.prune().keepFirst() + " (user)" : "int(0.1 L) (paper)"));
        s.put("keep_last", (r.prune().keepLast() != null ? r.prune().keepLast() + " (user)" : "1 (paper)"));
        s.put("lora", "r=" + r.lora().rank() + " alpha=" + r.lora().alpha() + " dropout=" + r.lora().dropout() + " " + r.lora().orderedTargets());
        s.put("lr", r.train().learningRate() + ", linear decay to 0 over the run, no warm-up (paper: HF Trainer, warmup_steps=0)");
        return s;
    }

    /**
     * Training steps t = 0..T-1 (the official {@code global_step} before the update); after step t's gradient a
     * prune to {@code ratio(t)} when {@code t % freq == 0} and {@code 0 < ratio(t) < final}, and one prune to the
     * final ratio at the first step where the schedule reaches it (or after the last step, when a short run's
     * schedule never does), so the target is always met.
     */
    @Override
    public List<Phase> phases() {
        double fin = r.prune().ratio();
        TreeMap<Integer, Double> prunes = new TreeMap<>(); // after step t's gradient, prune to this ratio
        for (int t = 0; t < steps; t++) {
            double q = RatioSchedule.cubic(t, steps, WARMUP, COOLDOWN, 0, fin);
            if ((t % freq == 0 && q > 0 && q < fin) || (q >= fin && !reaches(prunes, fin))) {
                prunes.put(t, Math.min(q, fin));
            }
            if (q >= fin && reaches(prunes, fin)) {
                break;
            }
        }
        if (!reaches(prunes, fin)) {
            // a short run whose schedule never reaches the target inside it: the last step prunes to it (in place of
            // a smaller prune there)
            prunes.put(steps - 1, fin);
        }
        List<Phase> p = new ArrayList<>();
        int done = 0;
        Double before = null;
        for (Map.Entry<Integer, Double> e : prunes.entrySet()) {
            p.add(new Phase(before, e.getKey() + 1 - done));
            done = e.getKey() + 1;
            before = e.getValue();
        }
        p.add(new Phase(before, steps - done));
        return p;
    }

    /** Whether the last of {@code prunes} reaches the final ratio. */
    private static boolean reaches(TreeMap<Integer, Double> prunes, double fin) {
        return !prunes.isEmpty() && prunes.lastEntry().getValue() >= fin;
    }

    @Override
    public Allocation.Options allocation(int layers) {
        int first = r.prune().keepFirst() != null ? r.prune().keepFirst() : (int) (0.1 * layers);
        int last = r.prune().keepLast() != null ? r.prune().keepLast() : 1;
        return new Allocation.Options(r.prune().ratio(), r.prune().targets(), "uniform", StructureGraph.Kind.KV_GROUP, null, null,
                first, last);
    }

    /**
     * One schedule over the whole run, as the official trainer's (HF {@code Trainer}, {@code warmup_steps=0}, linear
     * decay): {@code lr (T - t) / T} at 0-based step t of T, through every prune step.
     */
    @Override
    public ParamGroup.Rate runRate(TrainOptions options) {
        double peak = options.learningRate();
        return t -> peak * Math.max(0.0, (double) (steps - t) / steps);
    }

    @Override
    public boolean observesTraining() {
        return true;
    }

    @Override
    public void observe(int step, LoraAdapters lora, List<NDArray> grads, StepContext c) {
        UnitScores now = LoraPruneImportance.of(lora.model(), c.weights(), lora, grads);
        if (importance == null) {
            importance = UnitScores.zeros(lora.model());
        }
        if (now.hasNaN()) {
            return; // the official update_sensitivity_dict skips a step with NaNs
        }
        importance = importance.mix(BETA, now);
    }

    @Override
    public Scores score(StepContext c) {
        if (importance == null) {
            throw new IllegalStateException("lora-prune: no training step was observed before the first prune");
        }
        return importance.copy().scores(NAME, false);
    }

    @Override
    public void pruned(List<LayerSelection> kept) {
        importance = importance.pick(kept);
    }

    @Override
    public JsonNode state() {
        ObjectNode n = JSON.createObjectNode();
        n.set("kv", JSON.valueToTree(importance == null ? null : importance.groups()));
        n.set("channels", JSON.valueToTree(importance == null ? null : importance.channels()));
        return n;
    }

    @Override
    public void restore(JsonNode state) {
        String what = "lora-prune: unreadable checkpoint state";
        importance = state.get("kv").isNull() ? null : new UnitScores(Checkpoints.read(state.get("kv"), double[][].class, what),
                Checkpoints.read(state.get("channels"), double[][].class, what));
    }
}
