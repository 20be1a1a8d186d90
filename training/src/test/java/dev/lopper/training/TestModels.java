package dev.lopper.training;

import dev.lopper.training.loop.F32Tensors;
import dev.lopper.training.lora.LoraAdapters;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.layer.LayerSpec;
import dev.lopper.model.testing.RandomModels;

import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

/** Random models for recovery tests, including pruned ones with per-layer shapes and FLAP's biases. */
public final class TestModels {
    private TestModels() {
    }

    /**
     * A model like {@code spec} whose layers have {@code shapes} (non-uniform, biases where the shape says), written as
     * Lopper writes pruned models (lopper_layers; Phi-3 re-fused).
     */
    public static Path pruned(Path dir, RandomModels.Spec spec, List<LayerShape> shapes) throws Exception {
        Path dense = dir.resolveSibling(dir.getFileName() + "-dense");
        RandomModels.write(dense, spec.withLayers(shapes.size()));
        try (ModelDir d = ModelDir.open(dense); NDManager m = NDManager.newBaseManager(ai.djl.Device.cpu())) {
            ModelConfig config = d.config().withLayers(shapes);
            TensorMap t = new TensorMap(null);
            SplittableRandom rnd = new SplittableRandom(7);
            for (String name : List.of(WeightNames.EMBED, WeightNames.FINAL_NORM)) {
                t.put(name, d.checkpoint().load(name, m));
            }
            if (d.checkpoint().has(WeightNames.LM_HEAD)) {
                t.put(WeightNames.LM_HEAD, d.checkpoint().load(WeightNames.LM_HEAD, m));
            }
            for (int i = 0; i < shapes.size(); i++) {
                LayerSpec s = LayerSpec.of(config, i);
                s.params().forEach((p, shape) -> {
                    float[] v = new float[(int) java.util.Arrays.stream(shape).reduce(1, (a, b) -> a * b)];
                    boolean norm = p.name().endsWith("NORM");
                    double scale = shape.length == 2 && shape[1] > 0 ? 1 / Math.sqrt(shape[1]) : 0.1;
                    for (int k = 0; k < v.length; k++) {
                        v[k] = (float) ((norm ? 1 : 0) + rnd.nextGaussian() * (norm ? 0.1 : scale));
                    }
                    t.put(s.tensorName(p), m.create(v, new ai.djl.ndarray.types.Shape(shape)));
                });
            }
            ModelWriter.save(dir, config, t, DataType.FLOAT32, dense, ModelWriter.DEFAULT_MAX_SHARD_BYTES, null);
        }
        return dir;
    }

    /** Sets every B to random values (A is random already), so base + adapter differs from the base. */
    public static void randomizeB(LoraAdapters lora, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        for (LoraAdapters.Adapter a : lora.adapters()) {
            NDArray b = a.b();
            float[] v = new float[(int) b.size()];
            for (int i = 0; i < v.length; i++) {
                v[i] = (float) (rnd.nextGaussian() * 0.05);
            }
            F32Tensors.copyInto(b, v);
        }
    }
}
