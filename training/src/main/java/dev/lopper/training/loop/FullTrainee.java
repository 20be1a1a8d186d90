package dev.lopper.training.loop;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.surgery.Surgery;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * Every weight of a {@link FullModel} as a {@link Trainee}: one group (all weights, clipped, at the options'
 * warm-up + cosine rate and weight decay), the causal-LM forward pass on autograd-leaf aliases of the weights with
 * an optional per-layer transform (BiP's mask). A cut ({@link #cut}) applies {@link Surgery} to the weights and,
 * with the same selections, to AdamW's moments, and training continues on the smaller model in memory.
 *
 * <p>Memory: {@link FullModel#trainingBytes} (weights, gradients, two moments; fp32) plus activations.
 *
 * <pre>{@code
 * FullTrainee t = new FullTrainee(FullModel.load(config, checkpoint, Device.cpu()), options, () -> FullModel.LayerTransform.NONE);
 * new Trainer<>(t, new EfficientLlm(config, settings), data, options, checkpoints, listener).run();
 * try (FullModel trained = t.model()) { ... }   // the (possibly smaller) model; the caller closes it (or the trainee)
 * }</pre>
 */
public final class FullTrainee implements Trainee, AutoCloseable {
    public static final String GROUP = "weights";
    private static final ObjectMapper JSON = new ObjectMapper();

    private FullModel model;
    private final ParamGroup.Rate rate;
    private final double weightDecay;
    private final Supplier<FullModel.LayerTransform> transform;
    private final LossTerm term;

    /** @param transform applied to every layer in training and validation, asked anew each pass */
    public FullTrainee(FullModel model, TrainOptions o, Supplier<FullModel.LayerTransform> transform, LossTerm term) {
        this.model = model;
        this.rate = new LrSchedule(o.learningRate(), o.warmup(), o.steps())::at;
        this.weightDecay = o.weightDecay();
        this.transform = transform;
        this.term = term;
    }

    /** The current model (after training: the trained, possibly cut one; the caller closes it). */
    public FullModel model() {
        return model;
    }

    /** Closes the current model. */
    @Override
    public void close() {
        model.close();
    }

    @Override
    public List<ParamGroup> groups() {
        return List.of(new ParamGroup(GROUP, model.weights(), model.manager(), rate, true, weightDecay));
    }

    @Override
    public double train(MicroBatch b, Gradients grads) {
        term.prepare(b);
        Map<String, NDArray> leaves = F32Tensors.leaves(model.weights(), b.scope());
        double loss;
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            List<NDArray> hidden = new java.util.ArrayList<>();
            NDArray logits = model.logits(b.scope(), b.ids(), leaves, transform.get(), term.hiddenLayers(), hidden);
            NDArray l = term.loss(logits, hidden, b).mul((float) b.factor());
            loss = l.getFloat();
            gc.backward(l);
        }
        leaves.forEach((n, leaf) -> grads.add(n, leaf.getGradient()));
        return loss;
    }

    @Override
    public double evaluate(NDManager scope, NDArray ids) {
        return model.loss(scope, ids, model.weights(), transform.get()).getFloat();
    }

    @Override
    public long modelParameters() {
        return model.parameterCount();
    }

    @Override
    public JsonNode describe() {
        return JSON.createObjectNode().put("training", "full");
    }

    /** The model's config and its tensors' order (the gradient norm sums in it: bit-exact resume). */
    @Override
    public JsonNode shape() {
        ObjectNode n = JSON.createObjectNode();
        n.set("config", model.config().toJson());
        ArrayNode order = n.putArray("names");
        model.weights().keySet().forEach(order::add);
        return n;
    }

    @Override
    public void restore(JsonNode shape, Map<String, F32Tensors.Loaded> saved, String file) {
        ModelConfig config = ModelConfig.parse((ObjectNode) shape.get("config"), Path.of(file));
        Map<String, F32Tensors.Loaded> ordered = new LinkedHashMap<>();
        shape.get("names").forEach(n -> ordered.put(n.asText(), saved.get(n.asText())));
        FullModel restored = FullModel.of(config, ordered, model.manager().getDevice());
        model.close();
        model = restored;
    }

    @Override
    public Map<String, float[]> cut(List<LayerSelection> kept, Map<String, NDArray> moments) {
        FullModel next = model.cut(kept);
        Map<String, float[]> out = new LinkedHashMap<>();
        for (String moment : List.of(".exp_avg", ".exp_avg_sq")) { // each moment is cut as the weights are
            Map<String, NDArray> byWeight = new LinkedHashMap<>();
            model.weights().keySet().forEach(n -> byWeight.put(n, moments.get(n + moment)));
            var cut = Surgery.apply(model.config(), FullModel.source(byWeight), kept).tensors();
            try (NDManager scope = next.manager().newSubManager()) {
                next.weights().keySet().forEach(n -> out.put(n + moment, cut.load(n, scope).toFloatArray()));
            }
        }
        model.close();
        model = next;
        return out;
    }
}
