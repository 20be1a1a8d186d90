package dev.lopper.training.lora;

import dev.lopper.model.config.Family;
import dev.lopper.model.layer.Param;

import java.util.List;

/**
 * A module that carries one LoRA adapter, as PEFT names it on the HF model: one per projection, except where the
 * family fuses projections on disk (Phi-3's {@code qkv_proj} and {@code gate_up_proj}): there one adapter covers
 * the fused module, as PEFT on the HF model would, and each logical projection reads its rows of B.
 *
 * @param name the HF module name ({@code q_proj}, {@code qkv_proj}, ...)
 * @param block {@code self_attn} or {@code mlp}
 * @param parts the logical projections whose outputs are this module's rows, in order
 */
public record LoraModule(String name, String block, List<Param> parts) {
    private static final List<LoraModule> SEPARATE = List.of(
            new LoraModule("q_proj", "self_attn", List.of(Param.Q)),
            new LoraModule("k_proj", "self_attn", List.of(Param.K)),
            new LoraModule("v_proj", "self_attn", List.of(Param.V)),
            new LoraModule("o_proj", "self_attn", List.of(Param.O)),
            new LoraModule("gate_proj", "mlp", List.of(Param.GATE)),
            new LoraModule("up_proj", "mlp", List.of(Param.UP)),
            new LoraModule("down_proj", "mlp", List.of(Param.DOWN)));
    private static final List<LoraModule> FUSED = List.of(
            new LoraModule("qkv_proj", "self_attn", List.of(Param.Q, Param.K, Param.V)),
            new LoraModule("o_proj", "self_attn", List.of(Param.O)),
            new LoraModule("gate_up_proj", "mlp", List.of(Param.GATE, Param.UP)),
            new LoraModule("down_proj", "mlp", List.of(Param.DOWN)));

    /** The adaptable modules of a family's layer. */
    public static List<LoraModule> of(Family family) {
        return family.fusedProjections() ? FUSED : SEPARATE;
    }

    /**
     * The modules {@code config} targets. A fused module is targeted when all its projections are; only some of
     * them is refused (one adapter cannot cover part of a fused module).
     */
    public static List<LoraModule> targeted(Family family, LoraConfig config) {
        return of(family).stream().filter(m -> {
            long hit = m.parts.stream().filter(p -> config.targets().contains(logicalName(p))).count();
            if (hit != 0 && hit != m.parts.size()) {
                throw new IllegalArgumentException("--lora-targets: " + family + " fuses " + m.parts.stream().map(LoraModule::logicalName).toList()
                        + " into " + m.name + "; target all of them or none");
            }
            return hit > 0;
        }).toList();
    }

    /** HF name of a logical projection ({@code Param.Q} -> {@code q_proj}). */
    public static String logicalName(Param p) {
        return SEPARATE.stream().filter(m -> m.parts.equals(List.of(p))).findFirst()
                .orElseThrow(() -> new IllegalArgumentException(p + " is not a projection")).name;
    }

    /**
     * PEFT's tensor name prefix for this module in {@code layer}: its path in the HF model under PEFT's wrapper,
     * {@code base_model.model.model.layers.3.self_attn.q_proj}.
     */
    public String peftPrefix(int layer) {
        return "base_model.model.model.layers." + layer + "." + block + "." + name;
    }
}
