package dev.lopper.pruning.allocation;

import dev.lopper.pruning.criteria.Scores;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.model.ModelStats;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Turns {@link Scores} into a {@link PruningPlan}: how many structures each layer loses, and which (the lowest
 * scored). "ratio" is always the fraction of <em>prunable</em> parameters removed (see {@link #prunable}); the
 * achieved ratio is reported in {@link PruningPlan#result()} because whole heads and channels rarely hit it
 * exactly.
 *
 * <p>Strategies are registered by name: {@code uniform} ({@link UniformAllocation}, FLAP's UL-UM), {@code global}
 * ({@link GlobalAllocation}), {@code adaptive} ({@link AdaptiveAllocation}, FLAP's AL-AM), {@code ul-mm}
 * ({@link UniformManualAllocation}), {@code al-mm} ({@link AdaptiveManualAllocation}), {@code cfsp-blocks}
 * (CFSP's block budgets, {@link CfspBlockAllocation}) and {@code adapt-pruner} (Adapt-Pruner's layer-wise sparsity,
 * {@link AdaptPrunerAllocation}); others plug in with {@link #register}. A strategy reads
 * only {@link Scores}: it never calls a criterion.
 */
public final class Allocation {

    /**
     * What to allocate.
     *
     * @param ratio fraction of prunable parameters to remove, in [0, 1)
     * @param targets any of "heads", "channels", "layers"
     * @param strategy registered strategy name ("uniform", "global")
     * @param headUnit KV_GROUP or QUERY_HEAD, or null for the criterion's default ({@link Scores#headUnit()})
     * @param headRatio ratio of head units removed per layer (uniform), or null for {@code ratio}
     * @param channelRatio ratio of MLP channels removed per layer (uniform), or null for {@code ratio}
     * @param keepFirst the first k layers are never pruned
     * @param keepLast the last k layers are never pruned
     * @param uniformRounding how {@code uniform} counts per layer: {@value #INDEPENDENT} (the official codes:
     *     {@code int(r x heads)} and {@code int(r x channels)} removed independently) or {@value #ABSORB}
     *     ({@code round}, and the channels absorb the heads' rounding) or {@value #LLM_PRUNER} (LLM-Pruner's
     *     MetaPruner: {@code uniform} removes {@code n - int(n x (1 - r))} per layer, heads in runs of head_dim
     *     channels; {@code global} removes {@code U - int(U x (1 - r))} of all U head units and channels, each
     *     counting one); null for {@value #INDEPENDENT}
     */
    public record Options(double ratio, Set<String> targets, String strategy, StructureGraph.Kind headUnit,
                          Double headRatio, Double channelRatio, int keepFirst, int keepLast, String uniformRounding) {
        /** Counting rule of FLAP's UL-UM, Wanda-sp and mag_sp: {@code int(ratio x count)} per kind. */
        public static final String INDEPENDENT = "independent";
        /** Lopper's earlier rule: {@code round}, channels absorb the heads' rounding. */
        public static final String ABSORB = "absorb";
        /**
         * LLM-Pruner's counting ({@code LLMPruner/torch_pruning/pruner/algorithms/metapruner.py}): per layer
         * {@code n_pruned = n - int(n x (1 - r))} ({@code prune_local}); global {@code len(imp) - int(total x (1 - r))}
         * units, a head and a channel counting one each ({@code prune_global}).
         */
        public static final String LLM_PRUNER = "llm-pruner";

        /** Options with the default counting rule ({@value #INDEPENDENT}). */
        public Options(double ratio, Set<String> targets, String strategy, StructureGraph.Kind headUnit,
                       Double headRatio, Double channelRatio, int keepFirst, int keepLast) {
            this(ratio, targets, strategy, headUnit, headRatio, channelRatio, keepFirst, keepLast, null);
        }

        public Options {
            if (uniformRounding != null && !INDEPENDENT.equals(uniformRounding) && !ABSORB.equals(uniformRounding)
                    && !LLM_PRUNER.equals(uniformRounding)) {
                throw new IllegalArgumentException("--uniform-rounding " + uniformRounding + ": expected " + INDEPENDENT + ", " + ABSORB
                        + " or " + LLM_PRUNER);
            }
            targets = Set.copyOf(targets);
            if (!(ratio >= 0 && ratio < 1)) {
                throw new IllegalArgumentException("--ratio " + ratio + ": expected a number in [0, 1) (the fraction of prunable parameters removed)");
            }
            for (Double r : new Double[] {headRatio, channelRatio}) {
                if (r != null && !(r >= 0 && r < 1)) {
                    throw new IllegalArgumentException("head/channel ratio " + r + ": expected a number in [0, 1)");
                }
            }
            if (targets.isEmpty()) {
                throw new IllegalArgumentException("--targets: nothing to prune; expected any of " + PruningPlan.TARGETS);
            }
            for (String t : targets) {
                if (!PruningPlan.TARGETS.contains(t)) {
                    throw new IllegalArgumentException("--targets: found '" + t + "', expected any of " + PruningPlan.TARGETS);
                }
            }
            if (keepFirst < 0 || keepLast < 0) {
                throw new IllegalArgumentException("--keep-first/--keep-last must be >= 0");
            }
            if (headUnit != null && headUnit != StructureGraph.Kind.KV_GROUP && headUnit != StructureGraph.Kind.QUERY_HEAD) {
                throw new IllegalArgumentException("head unit must be KV_GROUP or QUERY_HEAD, not " + headUnit);
            }
        }

        /** Uniform or global allocation of {@code ratio} over {@code targets}, everything else default. */
        public static Options of(double ratio, Set<String> targets, String strategy) {
            return new Options(ratio, targets, strategy, null, null, null, 0, 0);
        }

        /** Whether uniform allocation uses the absorbing rule rather than the official independent one. */
        public boolean absorbRounding() {
            return ABSORB.equals(uniformRounding);
        }

        /** Whether units are counted as LLM-Pruner's MetaPruner counts them ({@value #LLM_PRUNER}). */
        public boolean llmPrunerCounting() {
            return LLM_PRUNER.equals(uniformRounding);
        }

        public boolean heads() {
            return targets.contains("heads");
        }

        public boolean channels() {
            return targets.contains("channels");
        }

        public boolean layers() {
            return targets.contains("layers");
        }

        /** Whether the residual stream's channels are a target ({@link StructureGraph.Kind#HIDDEN_CHANNEL}). */
        public boolean hidden() {
            return targets.contains("hidden");
        }

        /** Whether a layer's attention or MLP may go alone (target "sublayers"). */
        public boolean sublayers() {
            return targets.contains("sublayers");
        }

        /** These options with another ratio and targets, everything else the same. */
        public Options with(double r, Set<String> t) {
            return new Options(r, t, strategy, headUnit, headRatio, channelRatio, keepFirst, keepLast, uniformRounding);
        }

        /** Whether layer {@code i} of {@code n} may be pruned (not among the first/last kept). */
        public boolean prunable(int i, int n) {
            return i >= keepFirst && i < n - keepLast;
        }
    }

    /**
     * A way to allocate: picks what each original layer keeps. Implementations must return one selection per
     * layer, keep every layer a valid GQA layer, and leave non-prunable layers whole.
     */
    public interface Strategy {
        List<LayerSelection> select(StructureGraph graph, Scores scores, Options options);

        /** Whether the strategy ranks scores of different layers against each other as they are (global). */
        default boolean needsComparableScores() {
            return false;
        }

        /**
         * Whether the strategy reads each layer's importance (1 - cos of its input and output, {@link LayerImportance})
         * from {@link Scores#layers()}; the pipeline then measures it on the calibration data and puts it there.
         */
        default boolean needsLayerImportance() {
            return false;
        }
    }

    /** The strategy registered as {@code name}; an unknown name is an {@link IllegalArgumentException}. */
    public static synchronized Strategy strategy(String name) {
        Strategy s = STRATEGIES.get(name);
        if (s == null) {
            throw new IllegalArgumentException("--allocation " + name + ": expected one of " + strategies());
        }
        return s;
    }

    private static final Map<String, Strategy> STRATEGIES = new LinkedHashMap<>();

    static {
        register("uniform", new UniformAllocation());
        register("global", new GlobalAllocation());
        register("adaptive", new AdaptiveAllocation());
        register("cfsp-blocks", new CfspBlockAllocation());
        register("ul-mm", new UniformManualAllocation());
        register("al-mm", new AdaptiveManualAllocation());
        register("adapt-pruner", new AdaptPrunerAllocation());
    }

    private Allocation() {
    }

    /** Adds a strategy (e.g. FLAP's "adaptive"); later calls replace earlier ones of the same name. */
    public static synchronized void register(String name, Strategy strategy) {
        STRATEGIES.put(name, strategy);
    }

    public static synchronized Set<String> strategies() {
        return java.util.Collections.unmodifiableSet(new java.util.LinkedHashSet<>(STRATEGIES.keySet()));
    }

    /**
     * Allocates and returns a plan carrying the cuts, {@code options}' ratio/targets/strategy and the achieved
     * result; the caller adds criterion, calibration, seed and model hash with {@link PruningPlan#withProvenance}.
     */
    public static PruningPlan allocate(StructureGraph graph, Scores scores, Options options) {
        Strategy s = strategy(options.strategy());
        scores.checkAgainst(graph);
        if (options.keepFirst() + options.keepLast() >= graph.numLayers() && options.ratio() > 0) {
            throw new IllegalArgumentException("--keep-first " + options.keepFirst() + " + --keep-last " + options.keepLast()
                    + " leave no prunable layer (the model has " + graph.numLayers() + ")");
        }
        ModelConfig c = graph.config();
        Set<String> rest = new java.util.LinkedHashSet<>(options.targets());
        rest.remove("hidden");
        rest.remove("sublayers");
        if (options.sublayers() && !rest.isEmpty()) {
            throw new IllegalArgumentException("--targets sublayers cannot be combined with " + rest
                    + " in one run (a sublayer is a whole attention or MLP); prune them in a second run on the result");
        }
        // hidden with other structures: each gets 1 - sqrt(1 - ratio), so that the product of what stays of the two
        // axes of every matrix (stream x heads/channels/layers) is 1 - ratio (Lopper's split; docs/PRUNING.md)
        boolean mixed = options.hidden() && (options.sublayers() || !rest.isEmpty());
        double each = mixed ? 1 - Math.sqrt(1 - options.ratio()) : options.ratio();
        int[] keptHidden = LayerSelection.range(c.hiddenSize());
        if (options.hidden()) {
            keptHidden = HiddenSelection.kept(scores, c, each, options);
        }
        List<LayerSelection> sel;
        if (options.sublayers()) {
            sel = SublayerAllocation.select(graph, scores, options.with(each, Set.of("sublayers")));
        } else if (rest.isEmpty()) {
            sel = new ArrayList<>();
            for (int i = 0; i < c.numLayers(); i++) {
                sel.add(LayerSelection.whole(i, c.layer(i)));
            }
        } else {
            sel = s.select(graph, scores, options.with(each, rest));
        }
        PruningPlan plan = toPlan(c, sel, new PruningPlan(scores.criterion(), null, options.ratio(),
                PruningPlan.TARGETS.stream().filter(options.targets()::contains).toList(), options.strategy(), null, null,
                null, PruningPlan.toolVersionString(), List.of(), List.of(), null, null));
        if (keptHidden.length != c.hiddenSize()) {
            plan = plan.withHidden(new PruningPlan.HiddenPlan(keptHidden, null, null));
        }
        PruningPlan.Result r = result(c, sel, keptHidden.length, options);
        return plan.withResult(r.withRequested(options.ratio(), shortfall(c, sel, options, r)));
    }

    /**
     * Parameters with a residual-stream axis (what target "hidden" can remove): every parameter but Qwen3's q/k
     * norms and the q/k/v biases, which live on head_dim and the head axis.
     */
    public static long hiddenPrunable(ModelConfig c) {
        long n = ModelStats.parameters(c);
        for (LayerShape s : c.layers()) {
            long q = (long) s.numHeads() * c.headDim();
            long kv = (long) s.numKvHeads() * c.headDim();
            n -= (c.qkvBias() ? q + 2 * kv : 0) + (c.family().hasQkNorm() ? 2L * c.headDim() : 0);
        }
        return n;
    }

    /** As {@link #result(ModelConfig, List, Options)} with {@code keptHidden} residual channels kept. */
    public static PruningPlan.Result result(ModelConfig config, List<LayerSelection> sel, int keptHidden, Options o) {
        if (!o.hidden() && !o.sublayers()) {
            return result(config, sel, o);
        }
        long prunable = o.hidden() ? hiddenPrunable(config) : 0;
        if (!o.hidden()) {
            for (int i = o.keepFirst(); i < config.numLayers() - o.keepLast(); i++) {
                prunable += ModelStats.layerParameters(config, config.layer(i));
            }
        }
        long before = ModelStats.parameters(config);
        long after = ModelStats.parameters(prunedConfig(config, sel).withHiddenSize(keptHidden));
        return new PruningPlan.Result(before, after, prunable, before - after,
                prunable == 0 ? 0 : (double) (before - after) / prunable);
    }

    /** The counts of an applied plan (hidden cuts and sublayers included), its targets deciding what is prunable. */
    public static PruningPlan.Result result(ModelConfig config, PruningPlan plan) {
        List<LayerSelection> sel = plan.resolve(config);
        Set<String> t = new java.util.LinkedHashSet<>(plan.targets());
        if (t.contains("hidden") || t.contains("sublayers") || plan.hidden() != null) {
            if (plan.hidden() != null) {
                t.add("hidden");
            }
            return result(config, sel, plan.keptHidden(config).length, Options.of(0, t, "uniform"));
        }
        return result(config, sel, t.contains("heads"), t.contains("channels"), t.contains("layers"), 0, 0);
    }

    /**
     * One line when the achieved ratio is more than {@link PruningPlan#RATIO_TOLERANCE} away from {@code o.ratio()}:
     * both numbers and, per kind of unit, how many of how many went in the prunable layers (the per-layer range shows
     * a count that rounds to 0, e.g. int(0.2 x 4) = 0 KV groups); null when within the tolerance.
     */
    public static String shortfall(ModelConfig c, List<LayerSelection> sel, Options o, PruningPlan.Result r) {
        double gap = r.achievedRatio() - o.ratio();
        if (Math.abs(gap) <= PruningPlan.RATIO_TOLERANCE) {
            return null;
        }
        int n = c.numLayers();
        StructureGraph.Kind unit = o.headUnit() != null ? o.headUnit() : StructureGraph.Kind.KV_GROUP;
        long[] gone = new long[3], all = new long[3]; // head units, channels, layers
        int[][] perLayer = {{Integer.MAX_VALUE, 0}, {Integer.MAX_VALUE, 0}};
        int prunable = 0;
        for (LayerSelection s : sel) {
            if (!o.prunable(s.layer(), n)) {
                continue;
            }
            prunable++;
            LayerShape b = c.layer(s.layer());
            all[2]++;
            if (s.removed()) {
                gone[2]++;
                continue;
            }
            int hu = unit == StructureGraph.Kind.KV_GROUP ? b.numKvHeads() : b.numHeads();
            int hk = unit == StructureGraph.Kind.KV_GROUP ? s.keptKvGroups().length : s.keptHeads().length;
            int[] k = {hu - hk, b.intermediateSize() - s.keptChannels().length};
            int[] t = {hu, b.intermediateSize()};
            for (int j = 0; j < 2; j++) {
                gone[j] += k[j];
                all[j] += t[j];
                perLayer[j][0] = Math.min(perLayer[j][0], k[j]);
                perLayer[j][1] = Math.max(perLayer[j][1], k[j]);
            }
        }
        StringBuilder why = new StringBuilder(String.format(java.util.Locale.ROOT,
                "achieved ratio %.4f is %.4f %s the requested %.4f (more than %.2f): ", r.achievedRatio(), Math.abs(gap),
                gap < 0 ? "below" : "above", o.ratio(), PruningPlan.RATIO_TOLERANCE));
        List<String> parts = new ArrayList<>();
        String[] names = {unit == StructureGraph.Kind.KV_GROUP ? "KV groups" : "query heads", "MLP channels"};
        boolean[] on = {o.heads() && !o.layers(), o.channels() && !o.layers()};
        for (int j = 0; j < 2; j++) {
            if (on[j] && all[j] > 0) {
                String range = perLayer[j][0] == perLayer[j][1] ? String.valueOf(perLayer[j][0]) : perLayer[j][0] + "-" + perLayer[j][1];
                parts.add(String.format(java.util.Locale.ROOT, "%d of %d %s (%s per layer)", gone[j], all[j], names[j], range));
            }
        }
        if (o.layers()) {
            parts.add(gone[2] + " of " + all[2] + " layers");
        }
        if (o.sublayers()) {
            int attn = 0, mlp = 0, whole = 0;
            for (LayerSelection s : sel) {
                if (s.removed()) {
                    whole++;
                } else {
                    attn += s.keptHeads().length == 0 && c.layer(s.layer()).numHeads() > 0 ? 1 : 0;
                    mlp += s.keptChannels().length == 0 && c.layer(s.layer()).intermediateSize() > 0 ? 1 : 0;
                }
            }
            parts.add(attn + " attention blocks, " + mlp + " MLP blocks and " + whole + " whole layers");
        }
        if (o.hidden()) {
            parts.add("hidden channels (int(r x d) of the stream)");
        }
        why.append("removed ").append(String.join(", ", parts)).append(" in ").append(prunable).append(" prunable layers")
                .append(o.sublayers() ? "; only whole attention/MLP blocks go, lowest score first while within half a block of the budget"
                        : "; only whole units go, each layer keeping at least one of each kind, counted by --allocation " + o.strategy());
        if ("uniform".equals(o.strategy()) && !o.sublayers()) {
            why.append(" (").append(o.llmPrunerCounting() ? "n - int(n x (1 - r))" : o.absorbRounding() ? "round(r x n)" : "int(r x n)")
                    .append(" per layer)");
        }
        return why.toString();
    }

    /** Plan cuts from selections: kept lists for changed layers only. */
    public static PruningPlan toPlan(ModelConfig config, List<LayerSelection> selections, PruningPlan base) {
        List<Integer> removed = new ArrayList<>();
        List<PruningPlan.LayerPlan> layers = new ArrayList<>();
        for (LayerSelection s : selections) {
            LayerShape shape = config.layer(s.layer());
            if (s.removed()) {
                removed.add(s.layer());
            } else if (!s.unchanged(shape)) {
                layers.add(PruningPlan.LayerPlan.kept(s.layer(), s.keptKvGroups(), s.keptHeads(), s.keptChannels()));
            }
        }
        return base.withCuts(removed, layers);
    }

    /**
     * Prunable parameters of layer {@code s}: its attention weights (q/k/v/o and q/k/v biases) when heads are a
     * target, its MLP weights when channels are, the whole layer (norms included) when layers are. Embeddings,
     * the LM head, norms and compensation biases are never prunable by heads/channels.
     */
    public static long prunable(ModelConfig c, LayerShape s, boolean heads, boolean channels, boolean layers) {
        if (layers) {
            return ModelStats.layerParameters(c, s);
        }
        long h = c.hiddenSize();
        long q = (long) s.numHeads() * c.headDim();
        long kv = (long) s.numKvHeads() * c.headDim();
        long attn = 2 * h * q + 2 * h * kv + (c.qkvBias() ? q + 2 * kv : 0);
        long mlp = 3 * h * s.intermediateSize();
        return (heads ? attn : 0) + (channels ? mlp : 0);
    }

    /** Counts a selection: total parameters before/after and the achieved fraction of prunable ones removed. */
    public static PruningPlan.Result result(ModelConfig config, List<LayerSelection> sel, Options options) {
        return result(config, sel, options.heads(), options.channels(), options.layers(), options.keepFirst(), options.keepLast());
    }

    /** As {@link #result(ModelConfig, List, Options)}; with no target given, all three count as targets. */
    public static PruningPlan.Result result(ModelConfig config, List<LayerSelection> sel, boolean heads, boolean channels,
                                            boolean layers, int keepFirst, int keepLast) {
        if (!heads && !channels && !layers) {
            heads = channels = layers = true;
        }
        int n = config.numLayers();
        long prunable = 0;
        for (int i = keepFirst; i < n - keepLast; i++) {
            prunable += prunable(config, config.layer(i), heads, channels, layers);
        }
        long before = ModelStats.parameters(config);
        long after = ModelStats.parameters(prunedConfig(config, sel));
        return new PruningPlan.Result(before, after, prunable, before - after,
                prunable == 0 ? 0 : (double) (before - after) / prunable);
    }

    /** The config after applying selections (removed layers dropped, others reshaped). */
    public static ModelConfig prunedConfig(ModelConfig config, List<LayerSelection> sel) {
        return LayerSelection.prunedConfig(config, sel);
    }

    /** How many units a per-layer rule removes from the {@code p}-th prunable layer, given its shape and that kind's scores. */
    interface LayerRemoval {
        int count(int p, LayerShape s, double[] scores);
    }

    /** The layers that {@code o} lets be pruned, in order. */
    static List<Integer> prunableLayers(Options o, int n) {
        List<Integer> prunable = new java.util.ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (o.prunable(i, n)) {
                prunable.add(i);
            }
        }
        return prunable;
    }

    /**
     * Selections removing the lowest-scored units of each prunable layer, as many as {@code heads} and
     * {@code channels} say: KV groups (with their query heads), or query heads inside every group, and MLP channels;
     * the other layers stay whole. Shared by the allocations that set each layer's sparsity from a layer importance
     * (cfsp-blocks, adapt-pruner).
     */
    static List<LayerSelection> removeLowest(StructureGraph graph, Scores scores, StructureGraph.Kind unit, Options o,
                                             List<Integer> prunable, LayerRemoval heads, LayerRemoval channels) {
        ModelConfig c = graph.config();
        List<LayerSelection> out = new java.util.ArrayList<>();
        for (int i = 0; i < graph.numLayers(); i++) {
            out.add(LayerSelection.whole(i, c.layer(i)));
        }
        for (int p = 0; p < prunable.size(); p++) {
            int i = prunable.get(p);
            LayerShape s = c.layer(i);
            int[] keptGroups = LayerSelection.range(s.numKvHeads());
            int[] keptHeads = LayerSelection.range(s.numHeads());
            if (o.heads() && s.numHeads() > 0) {
                double[] hs = headScores(scores, unit)[i];
                int k = heads.count(p, s, hs);
                if (unit == StructureGraph.Kind.KV_GROUP) {
                    keptGroups = complement(s.numKvHeads(), lowest(hs, k));
                    keptHeads = headsOfGroups(s, keptGroups);
                } else {
                    keptHeads = UniformAllocation.keepPerGroup(s, hs, k);
                }
            }
            int[] keptChannels = LayerSelection.range(s.intermediateSize());
            if (o.channels() && s.intermediateSize() > 0) {
                double[] cs = scores.channels()[i];
                keptChannels = complement(s.intermediateSize(), lowest(cs, channels.count(p, s, cs)));
            }
            out.set(i, new LayerSelection(i, false, keptGroups, keptHeads, keptChannels));
        }
        return out;
    }

    /** Indices of the {@code k} lowest scores (ties: the higher index goes first, so that order is stable), ascending. */
    public static int[] lowest(double[] scores, int k) {
        Integer[] idx = new Integer[scores.length];
        Arrays.setAll(idx, i -> i);
        Arrays.sort(idx, (a, b) -> scores[a] != scores[b] ? Double.compare(scores[a], scores[b]) : Integer.compare(b, a));
        int[] out = new int[k];
        for (int i = 0; i < k; i++) {
            out[i] = idx[i];
        }
        Arrays.sort(out);
        return out;
    }

    /** 0..n-1 without {@code removed}. */
    public static int[] complement(int n, int[] removed) {
        boolean[] gone = new boolean[n];
        for (int r : removed) {
            gone[r] = true;
        }
        return Arrays.stream(LayerSelection.range(n)).filter(i -> !gone[i]).toArray();
    }

    /** Head scores for the unit in use, failing clearly when the criterion did not produce them. */
    public static double[][] headScores(Scores scores, StructureGraph.Kind unit) {
        double[][] s = scores.of(unit);
        if (s == null) {
            throw new IllegalArgumentException("criterion " + scores.criterion() + " gives no " + unit + " scores; use its default head unit ("
                    + scores.headUnit() + ")");
        }
        return s;
    }

    /** Kept heads of a layer given kept groups: all query heads of each kept group. */
    public static int[] headsOfGroups(LayerShape s, int[] groups) {
        int gs = s.groupSize();
        return Arrays.stream(groups).flatMap(g -> Arrays.stream(LayerSelection.range(gs)).map(r -> g * gs + r)).toArray();
    }

    /**
     * What layer {@code layer} keeps once the units marked in {@code headGone} / {@code channelGone} go (null: none
     * of that kind is removed). With KV groups as the head unit, {@code headGone[g]} removes group g with its query
     * heads; with query heads, {@code headGone[r]} removes rank r inside every group, {@code slotOrder} giving the
     * head at each (group, rank) slot.
     */
    static LayerSelection keptOf(int layer, LayerShape s, StructureGraph.Kind unit, boolean[] headGone, int[] slotOrder,
                                 boolean[] channelGone) {
        int[] groups = LayerSelection.range(s.numKvHeads());
        int[] heads = LayerSelection.range(s.numHeads());
        if (headGone != null && unit == StructureGraph.Kind.KV_GROUP) {
            groups = java.util.Arrays.stream(groups).filter(g -> !headGone[g]).toArray();
            heads = headsOfGroups(s, groups);
        } else if (headGone != null && slotOrder != null) {
            int gs = s.groupSize();
            List<Integer> kept = new java.util.ArrayList<>();
            for (int g = 0; g < s.numKvHeads(); g++) {
                for (int r = 0; r < gs; r++) {
                    if (!headGone[r]) {
                        kept.add(slotOrder[g * gs + r]);
                    }
                }
            }
            heads = kept.stream().mapToInt(Integer::intValue).sorted().toArray();
        }
        int[] channels = LayerSelection.range(s.intermediateSize());
        if (channelGone != null) {
            channels = java.util.Arrays.stream(channels).filter(j -> !channelGone[j]).toArray();
        }
        return new LayerSelection(layer, false, groups, heads, channels);
    }
}
