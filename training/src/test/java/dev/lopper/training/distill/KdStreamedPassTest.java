package dev.lopper.training.distill;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.pruning.Pruner;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.training.TestModels;
import dev.lopper.training.loop.LossPass;
import dev.lopper.training.loop.MicroBatch;
import dev.lopper.training.loop.StreamedPass;
import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.LoraConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** With the distillation loss, the layer-streamed student pass gives the in-memory pass's loss and adapter gradients. */
public class KdStreamedPassTest {
    @TempDir
    Path tmp;

    @Test
    void streamedStudentEqualsInMemoryUnderDistillation() throws Exception {
        Path teacher = tmp.resolve("t");
        RandomModels.write(teacher, RandomModels.llama().withHeads(4, 2).withLayers(3));
        Path student = tmp.resolve("s");
        new Pruner().run(PruneRequest.builder(teacher).criterion("magnitude").ratio(0.4).allocation("global").out(student).build());
        long[] ids = new long[2 * 12];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = (i * 37 + 5) % 300;
        }
        Distillation d = Distillation.of(teacher).withAlpha(0.6).withTemperature(1.5);
        try (ModelDir sd = ModelDir.open(student); LlamaModel lm = sd.loadModel(Device.cpu());
             TeacherForward tf = TeacherForward.open(teacher, ModelHash.of(teacher));
             LoraAdapters lora = LoraAdapters.create(sd.config(), LoraConfig.defaults(), 3, Device.cpu());
             NDManager root = NDManager.newBaseManager(Device.cpu())) {
            TestModels.randomizeB(lora, 9);
            KdLoss kd = new KdLoss(d, tf, null, new int[0], new int[0]);
            LossPass mem = LossPass.inMemory(lm, kd);
            LossPass streamed = new StreamedPass(sd.config(), sd.checkpoint(), kd);
            List<NDArray> g1 = new ArrayList<>();
            List<NDArray> g2 = new ArrayList<>();
            lora.tensors().values().forEach(t -> {
                g1.add(root.zeros(t.getShape()));
                g2.add(root.zeros(t.getShape()));
            });
            double l1;
            double l2;
            try (NDManager s = root.newSubManager()) {
                MicroBatch b = new MicroBatch(s, s.create(ids, new Shape(2, 12)), 0, 0, 0, 0.5, 77);
                l1 = mem.train(b, lora, g1);
                l2 = streamed.train(b, lora, g2);
            }
            assertEquals(l1, l2, 1e-5 * Math.abs(l1));
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
            assertTrue(maxGrad > 1e-4, "gradients must be non-trivial: " + maxGrad);
            assertTrue(maxDiff <= 1e-5 * Math.max(1, maxGrad), "streamed gradients differ by " + maxDiff + " (max " + maxGrad + ")");
        }
    }
}
