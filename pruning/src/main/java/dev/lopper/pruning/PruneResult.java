package dev.lopper.pruning;

import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.plan.PruningPlan;
import dev.lopper.pruning.surgery.Surgery;

import java.util.List;

/**
 * What {@link Pruner#run} returns.
 *
 * <pre>{@code
 * PruneResult r = new Pruner().run(request);
 * r.plan().save(Path.of("plan.json"));
 * r.stats().achievedRatio();
 * }</pre>
 *
 * @param plan the plan (criterion, settings, cuts, counts)
 * @param selections what each original layer keeps
 * @param surgery the surgery result (after the criterion's step after surgery), or null when no model was
 *                written; its tensors view the source checkpoint, so read them only inside
 *                {@link Pruner#run(dev.lopper.model.ModelDir, PruneRequest, ai.djl.ndarray.NDManager)}'s scope;
 *                its config and selections stay valid
 * @param settings the settings used and where each came from
 * @param stats time, tokens, memory, achieved ratio
 */
public record PruneResult(PruningPlan plan, List<LayerSelection> selections, Surgery.Result surgery, PruneSettings settings,
                          RunStats stats) {
}
