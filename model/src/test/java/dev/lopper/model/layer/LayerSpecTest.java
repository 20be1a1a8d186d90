package dev.lopper.model.layer;

import dev.lopper.model.config.LayerShape;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The layer description: what a family option adds, and what a pruned-away attention or MLP leaves. */
class LayerSpecTest {
    private static final LayerShape GQA = new LayerShape(4, 2, 96);

    @Test
    void qkNormSitsBetweenHeadSplitAndRope() {
        LayerSpec plain = LayerSpec.of(0, GQA, 64, 24, false, false);
        LayerSpec qwen3 = LayerSpec.of(0, GQA, 64, 24, false, true);
        assertFalse(plain.has(Param.Q_NORM));
        assertArrayEquals(new long[] {24}, qwen3.shapeOf(Param.Q_NORM));
        assertArrayEquals(new long[] {24}, qwen3.shapeOf(Param.K_NORM));
        assertArrayEquals(new long[] {4 * 24, 64}, qwen3.shapeOf(Param.Q));
        List<LayerOp> ops = qwen3.ops();
        // the only difference: one RMSNorm per q and k, on the head-split values, feeding RoPE
        assertEquals(plain.ops().size() + 2, ops.size());
        int qNorm = ops.indexOf(new LayerOp.RmsNorm("q_heads", Param.Q_NORM, "q_normed"));
        int kNorm = ops.indexOf(new LayerOp.RmsNorm("k_heads", Param.K_NORM, "k_normed"));
        assertTrue(qNorm > ops.indexOf(new LayerOp.SplitHeads("q_proj", 4, "q_heads")));
        assertTrue(kNorm > ops.indexOf(new LayerOp.SplitHeads("k_proj", 2, "k_heads")));
        assertTrue(ops.indexOf(new LayerOp.Rope("q_normed", "q")) > qNorm);
        assertTrue(ops.indexOf(new LayerOp.Rope("k_normed", "k")) > kNorm);
        assertEquals("out", qwen3.output());
    }

    @Test
    void biasesFollowTheOptionsAndTheShape() {
        LayerSpec s = LayerSpec.of(3, GQA.withBiases(true, true), 64, 16, true, false);
        assertTrue(s.has(Param.Q_BIAS) && s.has(Param.K_BIAS) && s.has(Param.V_BIAS) && s.has(Param.O_BIAS) && s.has(Param.DOWN_BIAS));
        assertTrue(s.ops().contains(new LayerOp.Linear("n1", Param.Q, Param.Q_BIAS, "q_proj")));
        assertEquals("model.layers.3.self_attn.q_proj.bias", s.tensorName(Param.Q_BIAS));
        assertEquals("model.layers.3.self_attn.q_norm.weight", Param.Q_NORM.tensorName(3));
    }

    @Test
    void emptiedAttentionAndMlpLeaveOnlyTheirBiases() {
        LayerSpec biasesOnly = LayerSpec.of(0, new LayerShape(0, 0, 0, true, true), 64, 16, false, true);
        assertEquals(List.of(new LayerOp.AddParam(LayerSpec.INPUT, Param.O_BIAS, "h"), new LayerOp.AddParam("h", Param.DOWN_BIAS, "out")),
                biasesOnly.ops());
        // the zero-row tensors stay in the layer's weights (a saved pruned model keeps them)
        assertArrayEquals(new long[] {0, 64}, biasesOnly.shapeOf(Param.Q));
        LayerSpec nothing = LayerSpec.of(0, new LayerShape(0, 0, 0), 64, 16, false, false);
        assertTrue(nothing.ops().isEmpty());
        assertEquals(LayerSpec.INPUT, nothing.output());
    }
}
