package dev.lopper.training.loop;

import dev.lopper.training.TestModels;
import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.LoraConfig;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The layer-streamed pass gives the in-memory pass's loss and adapter gradients (same dropout masks). */
public class StreamedPassTest {
    @TempDir
    Path tmp;

    @Test
    void streamedEqualsInMemoryOnAPrunedModel() throws Exception {
        Path m = TestModels.pruned(tmp.resolve("p"), RandomModels.llama(), List.of(new LayerShape(2, 1, 40, true, true),
                new LayerShape(4, 2, 96), new LayerShape(0, 0, 64, true, false)));
        long[] ids = new long[2 * 12];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = (i * 37 + 5) % 300;
        }
        try (ModelDir d = ModelDir.open(m); LlamaModel lm = d.loadModel(Device.cpu());
             LoraAdapters lora = LoraAdapters.create(d.config(), LoraConfig.defaults(), 3, Device.cpu());
             NDManager root = NDManager.newBaseManager(Device.cpu())) {
            TestModels.randomizeB(lora, 9);
            LossPass mem = LossPass.inMemory(lm, LossTerm.CAUSAL_LM);
            LossPass streamed = new StreamedPass(d.config(), d.checkpoint(), LossTerm.CAUSAL_LM);
            List<NDArray> g1 = zeros(root, lora);
            List<NDArray> g2 = zeros(root, lora);
            double l1;
            double l2;
            double e1;
            double e2;
            try (NDManager s = root.newSubManager()) {
                NDArray x = s.create(ids, new Shape(2, 12));
                MicroBatch b = new MicroBatch(s, x, 0, 0, 0, 0.5, 77);
                l1 = mem.train(b, lora, g1);
                l2 = streamed.train(b, lora, g2);
                e1 = mem.evaluate(s, x, lora);
                e2 = streamed.evaluate(s, x, lora);
            }
            assertEquals(l1, l2, 1e-5);
            assertEquals(e1, e2, 1e-5);
            double maxDiff = 0;
            double maxGrad = 0;
            for (int i = 0; i < g1.size(); i++) {
                float[] a = g1.get(i).toFloatArray();
                float[] b = g2.get(i).toFloatArray();
                for (int k = 0; k < a.length; k++) {
                    maxDiff = Math.max(maxDiff, Math.abs(a[k] - b[k]));
                    maxGrad = Math.max(maxGrad, Math.abs(a[k]));
                }
            }
            assertTrue(maxGrad > 1e-3, "gradients must be non-trivial: " + maxGrad);
            assertTrue(maxDiff <= 1e-5 * Math.max(1, maxGrad), "streamed gradients differ by " + maxDiff + " (max " + maxGrad + ")");
        }
    }

    private static List<NDArray> zeros(NDManager m, LoraAdapters lora) {
        List<NDArray> g = new ArrayList<>();
        lora.tensors().values().forEach(t -> g.add(m.zeros(t.getShape())));
        return g;
    }
}
