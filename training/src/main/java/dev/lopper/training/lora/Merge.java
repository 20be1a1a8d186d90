package dev.lopper.training.lora;

import dev.lopper.training.loop.F32Tensors;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.ModelDir;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.io.TensorSource;

import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Folds adapters into the weights: {@code W' = W + (alpha / r) B A} for every adapted projection (a fused module's
 * rows of B going to each of its logical projections). The merged model is written by {@link ModelWriter}, so
 * per-layer (pruned) shapes, FLAP's biases and Phi-3's fused layout are kept, and it computes what base + adapter
 * computes (without dropout).
 *
 * <pre>{@code
 * try (ModelDir base = ModelDir.open(pruned)) {
 *     Merge.save(base, lora, Path.of("work/recovered"), DataType.FLOAT32);
 * }
 * }</pre>
 */
public final class Merge {
    private Merge() {
    }

    /** The base weights with every adapted projection replaced by its merged fp32 weight (arrays in {@code manager}). */
    public static TensorMap merged(TensorSource base, LoraAdapters lora, NDManager manager) {
        TensorMap out = new TensorMap(base);
        byTensor(lora).forEach((name, part) -> out.put(name, merged(base, name, part.getKey(), part.getValue(), lora.config(), manager)));
        return out;
    }

    /** Every adapted tensor's name, with its adapter and the rows of the adapter's output that go to it. */
    private static Map<String, Map.Entry<LoraAdapters.Adapter, long[]>> byTensor(LoraAdapters lora) {
        Map<String, Map.Entry<LoraAdapters.Adapter, long[]>> adapted = new LinkedHashMap<>();
        for (LoraAdapters.Adapter a : lora.adapters()) {
            a.rows().forEach((p, rows) -> adapted.put(p.tensorName(a.layer()), Map.entry(a, rows)));
        }
        return adapted;
    }

    /**
     * W + (alpha / r) (B A)[rows] for tensor {@code name}, in {@code m}: B A multiplied where the adapters live, the
     * rest on {@code m}'s device.
     */
    private static NDArray merged(TensorSource base, String name, LoraAdapters.Adapter a, long[] r, LoraConfig c, NDManager m) {
        // the product moved to m; the adapters themselves are never attached to it (they stay the trainer's until
        // LoraAdapters closes)
        NDArray ba = a.b().matMul(a.a());
        ba.attach(m);
        NDArray delta = copy(ba, m).mul(c.scale()); // [out, in]
        NDArray rows = r[0] == 0 && r[1] == a.out() ? delta : delta.get(new NDIndex("{}:{}", r[0], r[1]));
        return base.load(name, m).add(rows);
    }

    /** A copy of {@code x} on {@code manager}'s device, owned by it (adapters may live on a GPU). */
    private static NDArray copy(NDArray x, NDManager manager) {
        NDArray c = x.toDevice(manager.getDevice(), true);
        if (c == x) {
            // on its own device toDevice returns x itself: attaching that would take the adapter from LoraAdapters
            // (and free it with the caller's manager)
            c = x.duplicate();
        }
        c.attach(manager);
        return c;
    }

    /**
     * Writes the merged model as an HF directory (atomically; tokenizer files copied from the base).
     *
     * @param storeAs dtype of every floating tensor, or null to keep each tensor's stored dtype (a BF16 base then
     *     rounds the merged update to BF16)
     * @return bytes of tensor data written
     */
    public static long save(ModelDir base, LoraAdapters lora, Path out, DataType storeAs) throws IOException {
        // lazy: the writer loads one merged tensor at a time, so a model larger than memory merges in one tensor's memory
        return ModelWriter.save(out, base.config(), new Lazy(base.checkpoint(), lora), storeAs, base.path(), ModelWriter.DEFAULT_MAX_SHARD_BYTES,
                new java.util.TreeMap<>(Map.of("format", "pt", "lopper_recovery", // sorted: the same bytes every run
                        "merged LoRA r=" + lora.config().rank() + " alpha=" + lora.config().alpha())));
    }

    /** The base with each adapted projection's merged weight computed when loaded (on the CPU, one tensor at a time). */
    private static final class Lazy implements TensorSource {
        private final TensorSource base;
        private final LoraAdapters lora;
        private final Map<String, Map.Entry<LoraAdapters.Adapter, long[]>> adapted;

        Lazy(TensorSource base, LoraAdapters lora) {
            this.base = base;
            this.lora = lora;
            this.adapted = byTensor(lora);
        }

        @Override
        public java.util.Set<String> names() {
            return base.names();
        }

        @Override
        public ai.djl.ndarray.types.Shape shape(String name) {
            return base.shape(name);
        }

        @Override
        public DataType storedType(String name) {
            return base.storedType(name);
        }

        @Override
        public NDArray load(String name, NDManager manager, DataType type) {
            Map.Entry<LoraAdapters.Adapter, long[]> e = adapted.get(name);
            if (e == null) {
                return base.load(name, manager, type);
            }
            float[] merged;
            try (NDManager tmp = NDManager.newBaseManager(ai.djl.Device.cpu())) { // on the CPU
                merged = merged(base, name, e.getKey(), e.getValue(), lora.config(), tmp).toFloatArray();
            }
            // a fresh tensor libtorch owns (F32Tensors.owned): nothing of the scratch manager's memory is shared
            NDArray out = F32Tensors.owned(manager, merged, base.shape(name));
            if (type == DataType.FLOAT32) {
                return out;
            }
            NDArray cast = out.toType(type, false);
            out.close();
            return cast;
        }
    }
}
