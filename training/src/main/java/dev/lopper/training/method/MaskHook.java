package dev.lopper.training.method;

import dev.lopper.training.job.Compresso;
import dev.lopper.training.loop.CausalLm;
import dev.lopper.training.lora.LoraHook;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.ProjectionHook;
import dev.lopper.model.layer.Param;

/**
 * Applies structure masks inside the forward pass, where Compresso's {@code modeling_llama.py} applies them:
 * each intermediate channel's mask multiplies the outputs of gate_proj and of up_proj ({@code LlamaMLP.forward}:
 * {@code down(act(gate(x) z) * up(x) z)}), and each KV group's mask multiplies its rows of v_proj's output. The
 * official code multiplies each head's attention output by {@code head_z}; attention output is linear in v, so a
 * mask on a head's v rows is the same product, and a KV group's mask on its v rows masks all the group's query
 * heads alike (Lopper's head unit for Compresso is the KV group; on a model without GQA that is the head). The
 * masks are applied after {@code inner} (the LoRA adapters), as the official LoRA linears sit inside the masked
 * projections.
 *
 * <pre>{@code
 * ProjectionHook h = new MaskHook(new LoraHook(lora, scope, true, true), headZ, channelZ);
 * NDArray logits = CausalLm.logits(model, scope, ids, h);
 * }</pre>
 *
 * @param inner the hook the masks apply after (the LoRA adapters)
 * @param heads per layer the KV groups' mask values [numKvHeads], or null where the layer has none
 * @param channels per layer the channels' mask values [intermediate], or null where the layer has none
 */
public record MaskHook(ProjectionHook inner, NDArray[] heads, NDArray[] channels) implements ProjectionHook {
    @Override
    public NDArray project(int layer, Param weight, NDArray input, NDArray output) {
        NDArray y = inner.project(layer, weight, input, output);
        if (weight == Param.V && heads[layer] != null) {
            Shape s = y.getShape();
            long groups = heads[layer].getShape().get(0);
            NDArray z = heads[layer].reshape(groups, 1);
            return y.reshape(s.get(0), s.get(1), groups, s.get(2) / groups).mul(z).reshape(s);
        }
        if ((weight == Param.GATE || weight == Param.UP) && channels[layer] != null) {
            return y.mul(channels[layer]);
        }
        return y;
    }
}
