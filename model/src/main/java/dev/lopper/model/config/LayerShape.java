package dev.lopper.model.config;

/**
 * The shape of one decoder layer. Pruned models have a different shape per layer, so nothing in Lopper may
 * assume that all layers agree.
 *
 * @param numHeads query heads (rows of q_proj = numHeads * headDim)
 * @param numKvHeads key/value heads (rows of k_proj and v_proj = numKvHeads * headDim); divides numHeads
 * @param intermediateSize MLP channels (rows of gate_proj/up_proj, columns of down_proj)
 * @param oProjBias whether o_proj carries a bias (FLAP's bias compensation adds one)
 * @param downProjBias whether down_proj carries a bias (FLAP's bias compensation adds one)
 */
public record LayerShape(int numHeads, int numKvHeads, int intermediateSize, boolean oProjBias, boolean downProjBias) {
    public LayerShape {
        if (numHeads < 0 || numKvHeads < 0 || intermediateSize < 0) {
            throw new IllegalArgumentException("negative layer shape: " + numHeads + "/" + numKvHeads + "/" + intermediateSize);
        }
        if (numKvHeads == 0 ? numHeads != 0 : numHeads % numKvHeads != 0) {
            throw new IllegalArgumentException("num_attention_heads " + numHeads + " is not a multiple of num_key_value_heads " + numKvHeads);
        }
    }

    public LayerShape(int numHeads, int numKvHeads, int intermediateSize) {
        this(numHeads, numKvHeads, intermediateSize, false, false);
    }

    /** Query heads that share one KV head. */
    public int groupSize() {
        return numKvHeads == 0 ? 0 : numHeads / numKvHeads;
    }

    public LayerShape withBiases(boolean oBias, boolean downBias) {
        return new LayerShape(numHeads, numKvHeads, intermediateSize, oBias, downBias);
    }
}
