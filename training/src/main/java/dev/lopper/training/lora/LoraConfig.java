package dev.lopper.training.lora;

import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * What LoRA adapts: rank r, alpha (the update is scaled by alpha / r), dropout on the adapter's input, and the
 * target projections by their HF names. The defaults are LLM-Pruner's post-training ones ({@code post_training.py}:
 * r 8, alpha 16, dropout 0.05, all seven projections).
 *
 * <pre>{@code
 * LoraConfig c = new LoraConfig(16, 32, 0.05, Set.of("q_proj", "v_proj"));
 * }</pre>
 */
public record LoraConfig(int rank, double alpha, double dropout, Set<String> targets) {
    /** The seven projections of a LLaMA layer, in HF's module names. */
    public static final List<String> ALL_TARGETS = List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj");

    public LoraConfig {
        if (rank < 1) {
            throw new IllegalArgumentException("--lora-rank " + rank + ": expected a positive rank");
        }
        if (!(dropout >= 0 && dropout < 1)) {
            throw new IllegalArgumentException("--lora-dropout " + dropout + ": expected a value in [0, 1)");
        }
        if (targets.isEmpty()) {
            throw new IllegalArgumentException("--lora-targets: expected at least one of " + String.join(",", ALL_TARGETS));
        }
        for (String t : targets) {
            if (!ALL_TARGETS.contains(t)) {
                throw new IllegalArgumentException("--lora-targets: unknown projection '" + t + "'; expected some of " + String.join(",", ALL_TARGETS));
            }
        }
        targets = Set.copyOf(new LinkedHashSet<>(targets));
    }

    /** r 8, alpha 16, dropout 0.05, all seven projections (LLM-Pruner's post-training defaults). */
    public static LoraConfig defaults() {
        return new LoraConfig(8, 16, 0.05, Set.copyOf(ALL_TARGETS));
    }

    /** The factor on B A: alpha / r (PEFT's {@code scaling}). */
    public double scale() {
        return alpha / rank;
    }

    /** Targets in the fixed order of {@link #ALL_TARGETS} (for files and messages). */
    public List<String> orderedTargets() {
        return ALL_TARGETS.stream().filter(targets::contains).toList();
    }
}
