package dev.lopper.training.loop;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Tensors that one optimizer updates alike: LoRA's A and B, a model's every weight, Compresso's log_alphas or its
 * Lagrange multipliers. The {@link Trainer} gives each group its own {@link AdamW} (moments owned by
 * {@code manager}), asks {@code rate} for the group's learning rate at every step, and clips the gradients of
 * the groups marked {@code clipped} together by their global norm.
 *
 * <pre>{@code
 * ParamGroup lora = new ParamGroup("lora", adapters.tensors(), adapters.manager(), new LrSchedule(3e-4, 10, 100)::at, true, 0);
 * }</pre>
 *
 * @param tensors by name (names are unique across a trainee's groups: they name the tensors in checkpoints)
 * @param rate the learning rate of 0-based step {@code step}; NaN: the group is not updated in that step (Compresso's
 *             masks before pruning starts); a negative rate ascends (Compresso's multipliers)
 */
public record ParamGroup(String name, Map<String, NDArray> tensors, NDManager manager, Rate rate, boolean clipped,
                         double weightDecay) {
    /** The learning rate per 0-based optimizer step. */
    @FunctionalInterface
    public interface Rate {
        double at(int step);
    }

    public List<String> names() {
        return new ArrayList<>(tensors.keySet());
    }

    public List<NDArray> arrays() {
        return new ArrayList<>(tensors.values());
    }
}
