package dev.lopper.pruning.allocation;

import dev.lopper.model.config.ModelConfig;
import dev.lopper.pruning.criteria.Scores;

/**
 * Which residual-stream channels stay ({@link dev.lopper.pruning.graph.StructureGraph.Kind#HIDDEN_CHANNEL}): one
 * choice for the whole model, since the stream is one. Removing k of d channels removes k/d of every parameter that
 * has a hidden axis, so k = {@code int(r x d)} ({@code d - int(d x (1 - r))} under LLM-Pruner's counting), the
 * lowest-scored; at least one channel stays.
 */
final class HiddenSelection {
    private HiddenSelection() {
    }

    static int[] kept(Scores scores, ModelConfig c, double ratio, Allocation.Options o) {
        if (scores.hidden() == null) {
            throw new IllegalArgumentException("criterion " + scores.criterion() + " gives no hidden-channel scores; "
                    + "--targets hidden takes --method magnitude, minitron or llm-pruner");
        }
        int d = c.hiddenSize();
        int k = o.llmPrunerCounting() ? d - (int) (d * (1 - ratio)) : (int) (ratio * d);
        k = Math.min(k, d - 1);
        return Allocation.complement(d, Allocation.lowest(scores.hidden(), k));
    }
}
