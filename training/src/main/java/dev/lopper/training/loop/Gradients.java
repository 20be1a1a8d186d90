package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One optimizer step's gradients, per {@link ParamGroup} and tensor name, summed over the step's micro-batches
 * (each backward on loss / accumulation, so the sum is the gradient of the batch mean). Zeros at the start of the
 * step, owned by the step's scope: a hook reads them, and must not keep them.
 *
 * <pre>{@code
 * NDArray g = grads.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
 * }</pre>
 */
public final class Gradients {
    private final Map<String, Map<String, NDArray>> groups = new LinkedHashMap<>();

    Gradients(List<ParamGroup> params, NDManager scope) {
        for (ParamGroup g : params) {
            Map<String, NDArray> z = new LinkedHashMap<>();
            g.tensors().forEach((n, p) -> z.put(n, scope.zeros(p.getShape())));
            groups.put(g.name(), z);
        }
    }

    private Gradients() {
    }

    /** Gradients already formed, as one group's (a method's hooks tested on their own). */
    public static Gradients of(String group, Map<String, NDArray> grads) {
        Gradients g = new Gradients();
        g.groups.put(group, new LinkedHashMap<>(grads));
        return g;
    }

    /** Adds {@code g} to the gradient of tensor {@code name} (of any group). */
    public void add(String name, NDArray g) {
        get(name).addi(g);
    }

    /** The gradient of tensor {@code name}. */
    public NDArray get(String name) {
        for (Map<String, NDArray> m : groups.values()) {
            NDArray a = m.get(name);
            if (a != null) {
                return a;
            }
        }
        throw new IllegalArgumentException("no trained tensor '" + name + "'");
    }

    /** Every gradient of group {@code group}, in the group's order. */
    public List<NDArray> list(String group) {
        return new ArrayList<>(groups.get(group).values());
    }
}
