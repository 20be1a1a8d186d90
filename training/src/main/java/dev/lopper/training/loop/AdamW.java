package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdamW with decoupled weight decay, step for step PyTorch's {@code torch.optim.AdamW} (single-tensor path):
 * {@code p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)}.
 *
 * <p>Written here rather than taken from DJL: DJL's {@code Adam} keeps its moments in private maps (a checkpoint
 * could not save or restore them) and clips per element, not by global norm. The moments are plain arrays, so a
 * checkpoint stores them bit for bit ({@link #state}) and a resumed run continues exactly.
 *
 * <pre>{@code
 * AdamW opt = new AdamW(params, manager, 0.0);   // betas 0.9, 0.999, eps 1e-8
 * opt.step(grads, lr);            // grads in the same order as params
 * }</pre>
 */
public final class AdamW {
    /** PyTorch's defaults, which every training run here uses. */
    private static final double BETA1 = 0.9;
    private static final double BETA2 = 0.999;
    private static final double EPS = 1e-8;

    private final List<NDArray> params;
    private final NDManager manager;
    private final double weightDecay;
    private final NDArray[] m;
    private final NDArray[] v;
    private long t;

    /** @param manager owns the moments (the parameters' manager, so they live as long as the adapters) */
    public AdamW(List<NDArray> params, NDManager manager, double weightDecay) {
        this.params = List.copyOf(params);
        this.manager = manager;
        this.weightDecay = weightDecay;
        this.m = new NDArray[params.size()];
        this.v = new NDArray[params.size()];
        for (int i = 0; i < m.length; i++) {
            m[i] = manager.zeros(params.get(i).getShape());
            v[i] = manager.zeros(params.get(i).getShape());
        }
    }

    /** One update of every parameter in place with gradients {@code grads} (same order) at learning rate {@code lr}. */
    public void step(List<NDArray> grads, double lr) {
        t++;
        double bc1 = 1 - Math.pow(BETA1, t);
        double bc2 = Math.sqrt(1 - Math.pow(BETA2, t));
        try (NDManager scope = manager.newSubManager()) {
            for (int i = 0; i < params.size(); i++) {
                NDArray p = params.get(i);
                NDArray g = grads.get(i);
                // while attached to scope, every temporary the in-place updates create lands in scope
                p.tempAttach(scope);
                m[i].tempAttach(scope);
                v[i].tempAttach(scope);
                if (weightDecay != 0) {
                    p.muli(1 - lr * weightDecay);
                }
                m[i].muli(BETA1).addi(g.mul(1 - BETA1));
                v[i].muli(BETA2).addi(g.square().mul(1 - BETA2));
                NDArray denom = v[i].sqrt().div(bc2).add(EPS);
                p.subi(m[i].div(denom).mul(lr / bc1));
            }
        }
    }

    /** Steps taken (PyTorch's {@code state['step']}). */
    public long steps() {
        return t;
    }

    /** The moments under {@code NAME.exp_avg} / {@code NAME.exp_avg_sq} for parameter names {@code names}. */
    public Map<String, NDArray> state(List<String> names) {
        Map<String, NDArray> s = new LinkedHashMap<>();
        for (int i = 0; i < params.size(); i++) {
            s.put(names.get(i) + ".exp_avg", m[i]);
            s.put(names.get(i) + ".exp_avg_sq", v[i]);
        }
        return s;
    }

    /** Restores moments saved by {@link #state} and the step count. */
    public void restore(List<String> names, Map<String, float[]> saved, long steps) {
        for (int i = 0; i < params.size(); i++) {
            F32Tensors.copyInto(m[i], require(saved, names.get(i) + ".exp_avg"));
            F32Tensors.copyInto(v[i], require(saved, names.get(i) + ".exp_avg_sq"));
        }
        t = steps;
    }

    private static float[] require(Map<String, float[]> saved, String name) {
        float[] a = saved.get(name);
        if (a == null) {
            throw new IllegalArgumentException("optimizer state: tensor '" + name + "' is missing");
        }
        return a;
    }
}
