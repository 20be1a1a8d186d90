package dev.lopper.training.method;

import dev.lopper.training.loop.Checkpoints;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.allocation.UniformAllocation;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.training.loop.FullModel;
import dev.lopper.training.loop.FullTrainee;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.stream.IntStream;

/**
 * BiP, structured (Zhang et al., NeurIPS 2022; official code {@code OPTML-Group/BiP} {@code trainer/bilevel.py},
 * {@code models/layers.py}; docs/CRITERIA-NOTES.md §12, deviations in docs/CRITERIA.md). One score {@code s_u} per
 * KV group and per MLP channel (upper level), initialised to the unit's weight L2 norm (the code's
 * {@code --scaled-score-init}: scores = weights, ranked by their L2 norm); the mask keeps, per layer, the units
 * with the largest {@code |s|} (the projection onto the target size; {@code int(ratio x n)} removed per layer and
 * kind, as {@code GetSubnetFilter}). The forward pass multiplies every element the unit's score covers by its mask
 * (a group's q/k/v rows and o_proj columns, a channel's gate/up rows and down_proj column), so a masked unit is
 * exactly a removed one and the mask's gradient sums over the same elements as the score's initial norm.
 *
 * <p>Per step: the trainer's weight update through the fixed mask (lower level, one step as the code), then on a
 * second, independent batch the upper level: {@code g = dL/ds} through the straight-through mask
 * ({@code m = hard + |s| - stopgrad(|s|)}), the implicit-gradient term of the bi-linear simplification as the code
 * computes it, {@code g - lr2 * g * g}, and PyTorch's SGD (momentum, weight decay) at the mask learning rate
 * with the code's step schedule (x0.1 from 50%, x0.01 from 75% of the steps). After the last step the units
 * outside the mask are cut (surgery).
 *
 * <pre>{@code
 * Bip bip = new Bip(model, new Bip.Settings(0.5, 0.1, 1e-4, 0.9, 1e-4, steps));
 * new Trainer<>(new FullTrainee(model, options, bip::transform, LossTerm.CAUSAL_LM), bip, data, options, checkpoints,
 *         listener).run();   // data: 2 x options.windows()
 * }</pre>
 */
public final class Bip implements FullTrainingMethod {
    public static final String NAME = "bip";
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * @param ratio fraction of each layer's KV groups and of its MLP channels removed ({@code 1 - k})
     * @param maskLr the scores' SGD learning rate ({@code mask_lr} 0.1)
     * @param lr2 the implicit-gradient factor ({@code lr2} 1e-4 in every bip.yml; plays 1/gamma)
     * @param momentum SGD momentum (0.9)
     * @param weightDecay the scores' SGD weight decay ({@code wd} 1e-4 in bip.yml)
     * @param steps the run's optimizer steps (the mask schedule's length)
     */
    public record Settings(double ratio, double maskLr, double lr2, double momentum, double weightDecay, int steps) {
        public Settings {
            if (!(ratio >= 0 && ratio < 1)) {
                throw new IllegalArgumentException("--ratio " + ratio + ": expected a number in [0, 1)");
            }
            if (!(maskLr > 0) || lr2 < 0 || momentum < 0 || weightDecay < 0) {
                throw new IllegalArgumentException("BiP: --mask-lr must be positive; --lr2, momentum and weight decay not negative");
            }
        }

        /**
         * The mask learning rate at 0-based step {@code step}: the official {@code train.py} builds the mask
         * optimizer's policy with {@code get_lr_policy(args.mask_lr_schedule)} ({@code utils/schedules.py::step_schedule},
         * not {@code get_mask_lr_policy}): x0.1 from 50% of training, x0.01 from 75%.
         */
        public double maskLrAt(int step) {
            return maskLr * (step >= 0.75 * steps ? 0.01 : step >= 0.5 * steps ? 0.1 : 1);
        }
    }

    /**
     * What BiP learns, [layer][unit] (the arrays are updated in place), and what a checkpoint keeps. A layer's
     * momentum buffers start with its first update (null until then); {@code finished}: the units are cut.
     */
    record State(float[][] groupScores, float[][] channelScores, float[][] groupMomentum, float[][] channelMomentum,
                 boolean finished) {
    }

    private final ModelConfig original;
    private final Settings settings;
    private State learned;

    /** The paper's code's settings (configs/*\/bip.yml) for a run of {@code steps} steps removing {@code ratio}. */
    public static Bip of(FullModel original, double ratio, int steps) {
        return new Bip(original, new Settings(ratio, 0.1, 1e-4, 0.9, 1e-4, steps));
    }

    /** Scores start at each unit's weight L2 norm in {@code model} (the original, uncut model). */
    public Bip(FullModel model, Settings settings) {
        this.original = model.config();
        this.settings = settings;
        int n = original.numLayers();
        learned = new State(new float[n][], new float[n][], new float[n][], new float[n][], false);
        StructureGraph graph = StructureGraph.of(original);
        try (NDManager scope = model.manager().newSubManager()) {
            for (int l = 0; l < n; l++) {
                learned.groupScores()[l] = norms(graph.kvGroups(l), model, scope);
                learned.channelScores()[l] = norms(graph.mlpChannels(l), model, scope);
            }
        }
    }

    private static float[] norms(StructureGraph.StructureSet set, FullModel model, NDManager scope) {
        double[] sq = set.sumPerUnit(name -> {
            NDArray x = model.weights().get(name).square();
            x.attach(scope);
            return x;
        });
        float[] out = new float[sq.length];
        for (int i = 0; i < sq.length; i++) {
            out[i] = (float) Math.sqrt(sq[i]);
        }
        return out;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public int batchesPerStep() {
        return 2;
    }

    @Override
    public JsonNode options() {
        return JSON.valueToTree(settings);
    }

    /** The binary mask of {@code scores}: 0 for the {@code int(ratio x n)} smallest |s| (ties: lower index first). */
    public float[] mask(float[] scores) {
        int n = scores.length;
        int removed = Math.min(UniformAllocation.count(settings.ratio(), n, false), Math.max(0, n - 1));
        float[] m = new float[n];
        Arrays.fill(m, 1f);
        IntStream.range(0, n).boxed().sorted(Comparator.comparingDouble((Integer i) -> Math.abs(scores[i])).thenComparingInt(i -> i))
                .limit(removed).forEach(i -> m[i] = 0f);
        return m;
    }

    /** The current mask as a layer transform (none once the units are cut); the trainee asks for it every pass. */
    @Override
    public FullModel.LayerTransform transform() {
        if (learned.finished()) {
            return FullModel.LayerTransform.NONE;
        }
        float[][] g = learned.groupScores();
        float[][] c = learned.channelScores();
        return (layer, w, scope) -> masked(w, scope.create(mask(g[layer])), scope.create(mask(c[layer])));
    }

    /**
     * {@code w} with every element of each unit times its mask: a KV group's rows of q/k/v (and biases) and its
     * columns of o_proj, a channel's rows of gate/up and its column of down_proj: the elements its score's L2 norm
     * starts from, as the official {@code GetSubnetFilter} masks the same elements its scores cover.
     */
    private LayerWeights masked(LayerWeights w, NDArray groups, NDArray channels) {
        LayerShape s = w.shape();
        int hd = original.headDim();
        int width = s.groupSize() * hd;
        long g = s.numKvHeads();
        NDArray qRows = groups.repeat(0, width).reshape(g * width, 1); // a group's query heads are contiguous
        NDArray kvRows = groups.repeat(0, hd).reshape(g * hd, 1);
        NDArray oCols = qRows.reshape(1, g * width);
        NDArray chRows = channels.reshape(s.intermediateSize(), 1);
        NDArray chCols = channels.reshape(1, s.intermediateSize());
        return new LayerWeights(w.index(), s, w.inputNorm(), w.q().mul(qRows), bias(w.qBias(), qRows), w.k().mul(kvRows),
                bias(w.kBias(), kvRows), w.v().mul(kvRows), bias(w.vBias(), kvRows), w.o().mul(oCols), w.oBias(), w.postNorm(),
                w.gate().mul(chRows), w.up().mul(chRows), w.down().mul(chCols), w.downBias(), w.qNorm(), w.kNorm());
    }

    private static NDArray bias(NDArray b, NDArray rows) {
        return b == null ? null : b.mul(rows.reshape(-1));
    }

    @Override
    public List<LayerSelection> afterUpdate(int step, FullTrainee trainee, StepData data) {
        upperStep(step, trainee.model(), data);
        if (step + 1 == settings.steps()) {
            return kept();
        }
        return null;
    }

    /** One upper-level update of every score on the step's second batch. */
    void upperStep(int step, FullModel model, StepData data) {
        int n = original.numLayers();
        float[][] groupScores = learned.groupScores();
        float[][] channelScores = learned.channelScores();
        float[][] gg = new float[n][];
        float[][] gc = new float[n][];
        for (int l = 0; l < n; l++) {
            gg[l] = new float[groupScores[l].length];
            gc[l] = new float[channelScores[l].length];
        }
        for (int micro = 0; micro < data.accumulation(); micro++) {
            try (NDManager sub = model.manager().newSubManager()) {
                NDArray[] sg = new NDArray[n];
                NDArray[] sc = new NDArray[n];
                for (int l = 0; l < n; l++) {
                    sg[l] = leaf(sub, groupScores[l]);
                    sc[l] = leaf(sub, channelScores[l]);
                }
                FullModel.LayerTransform ste = (layer, w, sc2) -> masked(w, straightThrough(sg[layer], mask(groupScores[layer]), sc2),
                        straightThrough(sc[layer], mask(channelScores[layer]), sc2));
                try (GradientCollector c = Engine.getInstance().newGradientCollector()) {
                    NDArray loss = model.loss(sub, data.extraBatch(sub, step, micro), model.weights(), ste)
                            .mul((float) (1.0 / data.accumulation()));
                    c.backward(loss);
                }
                data.progress(step, micro);
                for (int l = 0; l < n; l++) {
                    add(gg[l], sg[l].getGradient().toFloatArray());
                    add(gc[l], sc[l].getGradient().toFloatArray());
                }
            }
        }
        float lr = (float) settings.maskLrAt(step);
        for (int l = 0; l < n; l++) {
            learned.groupMomentum()[l] = sgd(groupScores[l], gg[l], learned.groupMomentum()[l], lr);
            learned.channelMomentum()[l] = sgd(channelScores[l], gc[l], learned.channelMomentum()[l], lr);
        }
    }

    private static NDArray leaf(NDManager m, float[] values) {
        NDArray a = m.create(values).duplicate(); // libtorch-owned storage (see F32Tensors.owned)
        a.setRequiresGradient(true);
        return a;
    }

    /** Forward: the hard mask exactly; backward: d/ds |s| = sign(s) (GetSubnet*'s straight-through estimator on |s|). */
    private static NDArray straightThrough(NDArray s, float[] hard, NDManager scope) {
        NDArray abs = s.abs();
        return scope.create(hard).add(abs.sub(abs.stopGradient()));
    }

    private static void add(float[] into, float[] g) {
        for (int i = 0; i < g.length; i++) {
            into[i] += g[i];
        }
    }

    /**
     * torch.optim.SGD (dampening 0, no Nesterov) on {@code s} with gradient {@code g - lr2 g^2} (the implicit
     * term as trainer/bilevel.py adds it); returns the momentum buffer.
     */
    private float[] sgd(float[] s, float[] g, float[] buf, float lr) {
        float[] out = new float[s.length];
        float lr2 = (float) settings.lr2(), wd = (float) settings.weightDecay(), mu = (float) settings.momentum();
        for (int i = 0; i < s.length; i++) {
            float d = g[i] + (-lr2 * g[i] * g[i]);
            d = d + wd * s[i];
            out[i] = buf == null ? d : mu * buf[i] + d;
            s[i] = s[i] - lr * out[i];
        }
        return out;
    }

    /** The same fraction of every layer's units: uniform. */
    @Override
    public String allocation() {
        return "uniform";
    }

    /** The units the current masks keep, one selection per layer (original indices = the model's, no earlier cut). */
    @Override
    public List<LayerSelection> kept() {
        List<LayerSelection> out = new ArrayList<>();
        for (int l = 0; l < original.numLayers(); l++) {
            int[] g = kept(mask(learned.groupScores()[l]));
            out.add(new LayerSelection(l, false, g, Allocation.headsOfGroups(original.layer(l), g), kept(mask(learned.channelScores()[l]))));
        }
        return out;
    }

    private static int[] kept(float[] mask) {
        return IntStream.range(0, mask.length).filter(i -> mask[i] != 0).toArray();
    }

    @Override
    public void cut(List<LayerSelection> current) {
        learned = new State(learned.groupScores(), learned.channelScores(), learned.groupMomentum(), learned.channelMomentum(), true);
    }

    @Override
    public JsonNode state() {
        return JSON.valueToTree(learned);
    }

    @Override
    public void restore(JsonNode state) {
        learned = Checkpoints.read(state, State.class, "bip checkpoint state");
    }
}
