package dev.lopper.model;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Forward passes allocate only in their own scope and the caller's manager: the model's manager never grows. */
class NoLeakTest {
    @TempDir
    Path tmp;

    @Test
    void repeatedForwardPassesLeaveNoArraysBehind() throws Exception {
        RandomModels.write(tmp.resolve("m"), RandomModels.llama().withQkvBias(true));
        try (ModelDir md = ModelDir.open(tmp.resolve("m")); LlamaModel model = md.loadModel(Device.cpu())) {
            int before = model.managedArrays();
            for (int i = 0; i < 20; i++) {
                model.logits(new long[] {1, 2, 3, 4, 5});
                try (NDManager caller = NDManager.newBaseManager(Device.cpu())) {
                    NDArray ids = caller.create(new long[] {7, 8, 9, 10, 11, 12}, new Shape(2, 3));
                    NDArray pad = caller.create(new long[] {1, 1, 1, 0, 1, 1}, new Shape(2, 3));
                    model.logits(ids, pad, LayerHooks.NONE);
                    assertEquals(3, caller.getManagedArrays().size(), "ids, padding mask and the logits");
                }
            }
            assertEquals(before, model.managedArrays());
        }
    }
}
