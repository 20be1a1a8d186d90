package dev.lopper.training.lora;

import dev.lopper.training.loop.F32Tensors;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.layer.LayerOp;
import dev.lopper.model.layer.LayerSpec;
import dev.lopper.model.layer.Param;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The LoRA adapters of a model: per decoder layer and targeted module, A [r, in] and B [out, r] (fp32), so that the
 * module computes {@code W x + (alpha / r) B A dropout(x)}. New adapters start as PEFT's: A Kaiming-uniform
 * ({@code a = sqrt(5)}, i.e. U(-1/sqrt(in), 1/sqrt(in))), B zero, so training starts at the base model.
 * Shapes follow each layer's own (possibly pruned) shape; a module a layer does not run (every head or channel
 * pruned) has no adapter.
 *
 * <pre>{@code
 * try (LoraAdapters lora = LoraAdapters.create(model.config(), LoraConfig.defaults(), 42, Device.cpu())) {
 *     NDArray a = lora.adapters().get(0).a();    // layer 0's first module's A
 * }
 * }</pre>
 *
 * @param manager the manager owning A and B (the optimizer keeps its state beside them)
 */
public record LoraAdapters(ModelConfig model, LoraConfig config, NDManager manager, List<Adapter> adapters) implements AutoCloseable {
    public LoraAdapters {
        adapters = Collections.unmodifiableList(adapters);
    }

    /**
     * One adapter.
     *
     * @param rows each logical projection's rows [from, to) of B (one entry, all rows, unless the module is fused)
     */
    public record Adapter(int layer, LoraModule module, long in, long out, Map<Param, long[]> rows, NDArray a, NDArray b) {
    }

    /** Fresh adapters (A Kaiming-uniform from {@code seed}, B zero) for every targeted module of every layer. */
    public static LoraAdapters create(ModelConfig model, LoraConfig config, long seed, Device device) {
        SplittableRandom rnd = new SplittableRandom(seed);
        return build(model, config, device, (layer, module, shapeA, shapeB, m) -> {
            float bound = (float) (1 / Math.sqrt(shapeA.get(1)));
            float[] a = new float[(int) shapeA.size()];
            for (int i = 0; i < a.length; i++) {
                a[i] = (float) ((rnd.nextDouble() * 2 - 1) * bound);
            }
            return new NDArray[] {F32Tensors.owned(m, a, shapeA), m.zeros(shapeB)};
        });
    }

    /** Supplies A and B for an adapter of the given shapes (in {@code m}). */
    interface Init {
        NDArray[] make(int layer, LoraModule module, Shape a, Shape b, NDManager m);
    }

    /** Adapters whose A and B come from {@code init}, shaped by each layer of {@code model}. */
    static LoraAdapters build(ModelConfig model, LoraConfig config, Device device, Init init) {
        NDManager manager = NDManager.newBaseManager(device);
        try {
            List<Adapter> list = new ArrayList<>();
            List<LoraModule> modules = LoraModule.targeted(model.family(), config);
            for (int i = 0; i < model.numLayers(); i++) {
                LayerSpec spec = LayerSpec.of(model, i);
                for (LoraModule m : modules) {
                    if (!runs(spec, m)) {
                        continue;
                    }
                    long in = spec.shapeOf(m.parts().get(0))[1];
                    Map<Param, long[]> rows = new LinkedHashMap<>();
                    long out = 0;
                    for (Param p : m.parts()) {
                        long n = spec.shapeOf(p)[0];
                        rows.put(p, new long[] {out, out + n});
                        out += n;
                    }
                    if (in == 0 || out == 0) {
                        continue;
                    }
                    NDArray[] ab = init.make(i, m, new Shape(config.rank(), in), new Shape(out, config.rank()), manager);
                    list.add(new Adapter(i, m, in, out, rows, ab[0], ab[1]));
                }
            }
            return new LoraAdapters(model, config, manager, list);
        } catch (RuntimeException e) {
            manager.close();
            throw e;
        }
    }

    /** Whether the layer runs every projection of the module (a pruned-away attention or MLP runs none). */
    private static boolean runs(LayerSpec spec, LoraModule m) {
        return m.parts().stream().allMatch(p -> spec.ops().stream()
                .anyMatch(op -> op instanceof LayerOp.Linear l && l.weight() == p));
    }

    /** Trainable parameters: sum of r (in + out) over adapters. */
    public long parameterCount() {
        return adapters.stream().mapToLong(a -> (long) config.rank() * (a.in() + a.out())).sum();
    }

    /** Every A and B under its PEFT name ({@code ....q_proj.lora_A.weight}), in a fixed order. */
    public Map<String, NDArray> tensors() {
        Map<String, NDArray> t = new LinkedHashMap<>();
        for (Adapter a : adapters) {
            t.put(a.module().peftPrefix(a.layer()) + ".lora_A.weight", a.a());
            t.put(a.module().peftPrefix(a.layer()) + ".lora_B.weight", a.b());
        }
        return t;
    }

    @Override
    public void close() {
        manager.close();
    }
}
