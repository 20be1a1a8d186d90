package dev.lopper.training.method;


import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.allocation.KeptUnits;
import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.training.loop.Checkpoints;
import dev.lopper.training.loop.FullModel;
import dev.lopper.training.loop.FullTrainee;
import dev.lopper.training.loop.Gradients;

import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * EfficientLLM's pruning-aware training (Xing et al. 2025, arXiv 2502.06663; no training code is public, see
 * docs/CRITERIA-NOTES.md §11 and docs/CRITERIA.md): LLM-Pruner's first-order Taylor saliency
 * {@code S_u = sum_{w in u} |w * dL/dw|} of every structure group u (KV groups, MLP channels), taken from every
 * training step's gradient and summed since the last removal; at {@link Settings#removals} evenly spaced steps in
 * the first {@link Settings#pruneFraction} of training the lowest-saliency groups go (global ranking, the target
 * rising linearly to the ratio), and training continues on the smaller model.
 *
 * <pre>{@code
 * EfficientLlm m = new EfficientLlm(config, new EfficientLlm.Settings(0.5, 4, 0.5, steps));
 * new Trainer<>(new FullTrainee(model, options, () -> FullModel.LayerTransform.NONE, LossTerm.CAUSAL_LM), m, data, options,
 *         checkpoints, listener).run();
 * }</pre>
 */
public final class EfficientLlm implements FullTrainingMethod {
    public static final String NAME = "efficientllm";
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * @param ratio fraction of the original model's prunable parameters removed at the end
     * @param removals number of removal points (Lopper's choice: 4)
     * @param pruneFraction removals happen within this first fraction of the steps (Lopper's choice: 0.5)
     * @param steps the run's optimizer steps
     */
    public record Settings(double ratio, int removals, double pruneFraction, int steps) {
        public Settings {
            if (!(ratio >= 0 && ratio < 1)) {
                throw new IllegalArgumentException("--ratio " + ratio + ": expected a number in [0, 1)");
            }
            if (removals < 1 || removals > steps) {
                throw new IllegalArgumentException("--removals " + removals + ": expected 1 to --steps (" + steps + ")");
            }
            if (!(pruneFraction > 0 && pruneFraction <= 1)) {
                throw new IllegalArgumentException("--prune-fraction " + pruneFraction + ": expected a number in (0, 1]");
            }
        }

        /** The step (1-based, after which) removal {@code j} (1-based) happens. */
        public int removalStep(int j) {
            return Math.max(j, (int) Math.round(j * pruneFraction * steps / removals));
        }
    }

    /** What a checkpoint keeps: the saliency since the last removal and what is kept (original indices). */
    record State(double[][] groupSaliency, double[][] channelSaliency, int[][] groups, int[][] channels) {
    }

    private final ModelConfig original;
    private final Settings settings;
    private KeptUnits units;
    /** Saliency summed since the last removal, on the original model's units. */
    private UnitScores saliency;
    private List<LayerSelection> pending;

    /** The method for a run of {@code steps} steps removing {@code ratio}: 4 removals in the first half (Lopper's choice). */
    public static EfficientLlm of(FullModel original, double ratio, int steps) {
        return new EfficientLlm(original.config(), new Settings(ratio, Math.min(4, steps), 0.5, steps));
    }

    public EfficientLlm(ModelConfig original, Settings settings) {
        this.original = original;
        this.settings = settings;
        this.units = KeptUnits.whole(original);
        this.saliency = UnitScores.zeros(original);
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public JsonNode options() {
        return JSON.valueToTree(settings);
    }

    @Override
    public List<LayerSelection> kept() {
        return units.kept();
    }

    /** One saliency ranking over all layers: global. */
    @Override
    public String allocation() {
        return "global";
    }

    /** The step's saliency, from the gradients before clipping. */
    @Override
    public void afterBackward(int step, FullTrainee trainee, Gradients grads) {
        FullModel model = trainee.model();
        StructureGraph graph = StructureGraph.of(model.config());
        Map<String, NDArray> w = model.weights();
        for (int l = 0; l < model.config().numLayers(); l++) {
            add(graph.kvGroups(l), StructureGraph.Kind.KV_GROUP, l, saliency.groups()[l], w, grads);
            add(graph.mlpChannels(l), StructureGraph.Kind.MLP_CHANNEL, l, saliency.channels()[l], w, grads);
        }
    }

    private void add(StructureGraph.StructureSet set, StructureGraph.Kind kind, int l, double[] into, Map<String, NDArray> w,
                     Gradients g) {
        if (set.count() == 0) {
            return;
        }
        try (var scope = w.values().iterator().next().getManager().newSubManager()) {
            double[] s = set.sumPerUnit(name -> {
                NDArray x = w.get(name).mul(g.get(name)).abs(); // LLM-Pruner param_first: |W * dL/dW| per element
                x.attach(scope);
                return x;
            });
            for (int u = 0; u < s.length; u++) {
                into[units.original(kind, l, u)] += s[u];
            }
        }
    }

    @Override
    public List<LayerSelection> afterUpdate(int step, FullTrainee trainee, StepData data) {
        int done = step + 1;
        for (int j = 1; j <= settings.removals(); j++) {
            if (settings.removalStep(j) == done) {
                pending = allocate(settings.ratio() * j / settings.removals());
                return units.toCurrent(pending);
            }
        }
        return null;
    }

    /** Global allocation of {@code ratio} over the original model; units already removed score -infinity. */
    List<LayerSelection> allocate(double ratio) {
        Scores scores = saliency.masked(units.kept()).scores(NAME, true);
        Allocation.Options o = new Allocation.Options(ratio, Set.of("heads", "channels"), "global", StructureGraph.Kind.KV_GROUP,
                null, null, 0, 0);
        return Allocation.strategy("global").select(StructureGraph.of(original), scores, o);
    }

    @Override
    public void cut(List<LayerSelection> current) {
        units = units.keep(pending);
        pending = null;
        saliency = UnitScores.zeros(original); // each decision rests on the weights as trained since the last one
    }

    @Override
    public JsonNode state() {
        int[][] groups = units.kept().stream().map(LayerSelection::keptKvGroups).toArray(int[][]::new);
        int[][] channels = units.kept().stream().map(LayerSelection::keptChannels).toArray(int[][]::new);
        return JSON.valueToTree(new State(saliency.groups(), saliency.channels(), groups, channels));
    }

    @Override
    public void restore(JsonNode state) {
        State s = Checkpoints.read(state, State.class, "efficientllm checkpoint state");
        saliency = new UnitScores(s.groupSaliency(), s.channelSaliency());
        List<LayerSelection> kept = new java.util.ArrayList<>();
        for (int l = 0; l < original.numLayers(); l++) {
            kept.add(new LayerSelection(l, false, s.groups()[l], Allocation.headsOfGroups(original.layer(l), s.groups()[l]), s.channels()[l]));
        }
        units = KeptUnits.of(original, kept);
    }
}
