package dev.lopper.pruning.criteria;

import dev.lopper.pruning.graph.StructureGraph;

/**
 * The settings a criterion's paper (its official code) runs with; the pipeline uses them wherever the request
 * leaves a setting unset, and records which were used (the plan's {@code settings}).
 *
 * <pre>{@code
 * new Defaults(1024, 128, "adaptive", StructureGraph.Kind.KV_GROUP, 0, 0, "FLAP scripts: ...");
 * }</pre>
 *
 * @param samples calibration windows (0 when the criterion needs no calibration)
 * @param seqLen tokens per calibration window (0 when none)
 * @param allocation registered allocation strategy ({@code dev.lopper.pruning.allocation.Allocation})
 * @param headUnit KV_GROUP or QUERY_HEAD
 * @param keepFirst first layers never pruned
 * @param keepLast last layers never pruned
 * @param source where the defaults come from (script, file, paper section)
 * @param counting the allocation's counting rule ({@code Allocation.Options#uniformRounding}): {@code independent}
 *                 (FLAP's, Wanda-sp's int(r x n)) or {@code llm-pruner} (LLM-Pruner's n - int(n (1 - r)) per layer,
 *                 and one count over all units for global allocation)
 */
public record Defaults(int samples, int seqLen, String allocation, StructureGraph.Kind headUnit, int keepFirst,
                       int keepLast, String source, String counting) {

    /** Defaults with the {@code independent} counting rule. */
    public Defaults(int samples, int seqLen, String allocation, StructureGraph.Kind headUnit, int keepFirst, int keepLast,
                    String source) {
        this(samples, seqLen, allocation, headUnit, keepFirst, keepLast, source, "independent");
    }

    /** Defaults of a criterion that needs no calibration data, whole KV groups, no layer kept. */
    public static Defaults weightsOnly(String allocation, String source) {
        return new Defaults(0, 0, allocation, StructureGraph.Kind.KV_GROUP, 0, 0, source);
    }
}
