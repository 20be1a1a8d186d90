package dev.lopper.pruning.surgery;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.ModelDir;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.io.ModelWriter;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.model.io.StoredBytes;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.LayerSelection;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Saving a surgery result streams from the checkpoint's bytes (untouched tensors copied, cut ones sliced without
 * conversion, issue 15 item 3). The saved directory must be byte-identical to what the converting path writes
 * (every tensor loaded as fp32, index-selected, rounded back to its stored dtype: the code before the change,
 * still used for arrays in memory), file by file.
 */
class StreamedSaveTest {
    @TempDir
    Path tmp;

    static Stream<RandomModels.Spec> variants() {
        RandomModels.Spec base = RandomModels.llama().withLayers(3).withHeads(8, 2);
        return Stream.of(
                base.withDtype(DataType.BFLOAT16).withShards(3).withTied(true),
                base.withDtype(DataType.FLOAT32),
                base.withFamily(Family.QWEN2).withDtype(DataType.BFLOAT16),       // q/k/v biases cut on axis 0
                base.withDtype(DataType.FLOAT16));
    }

    @ParameterizedTest
    @MethodSource("variants")
    void streamedSaveIsByteIdenticalToConvertingSave(RandomModels.Spec spec) throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, spec);
        try (ModelDir md = ModelDir.open(dir); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            ModelConfig c = md.config();
            List<LayerSelection> sel = List.of(
                    new LayerSelection(0, false, new int[] {1}, new int[] {4, 5, 6, 7}, Allocation.complement(96, new int[] {0, 5, 9, 50, 95})),
                    new LayerSelection(1, true, new int[0], new int[0], new int[0]),
                    new LayerSelection(2, false, LayerSelection.range(2), LayerSelection.range(8), new int[] {1, 2, 3, 40, 41, 90}));
            Surgery.Result r = Surgery.apply(c, md.checkpoint(), sel);
            // an array in memory (as FLAP's compensation bias) goes the converting way in both saves
            r.tensors().put(WeightNames.attn(0, "o_proj", "bias"), m.randomNormal(new Shape(64)));
            long shard = 40_000; // several output shards
            Path streamed = tmp.resolve("streamed");
            Path converted = tmp.resolve("converted");
            ModelWriter.save(streamed, r.config(), r.tensors(), null, dir, shard, Map.of("format", "pt"));
            ModelWriter.save(converted, r.config(), new ConvertOnly(r.tensors()), null, dir, shard, Map.of("format", "pt"));
            Set<String> files = new TreeSet<>();
            try (Stream<Path> s = Files.list(streamed)) {
                s.forEach(p -> files.add(p.getFileName().toString()));
            }
            Set<String> others = new TreeSet<>();
            try (Stream<Path> s = Files.list(converted)) {
                s.forEach(p -> others.add(p.getFileName().toString()));
            }
            assertEquals(files, others);
            files.remove(OutputGuard.MARKER); // Lopper's output marker holds its creation time
            assertEquals(true, files.contains("model.safetensors.index.json"), "several shards: " + files);
            for (String f : files) {
                assertArrayEquals(Files.readAllBytes(converted.resolve(f)), Files.readAllBytes(streamed.resolve(f)), spec.dtype() + " " + f);
            }
            // and the values are those of a plain loop over the source (down_proj of layer 2: columns 1, 2, 3, 40, 41, 90)
            try (Checkpoint out = Checkpoint.open(streamed)) {
                float[] src = md.checkpoint().load(WeightNames.mlp(2, "down_proj", "weight"), m).toFloatArray();
                float[] got = out.load(WeightNames.mlp(1, "down_proj", "weight"), m).toFloatArray();
                int[] kept = {1, 2, 3, 40, 41, 90};
                for (int row = 0; row < 64; row++) {
                    for (int k = 0; k < kept.length; k++) {
                        assertEquals(src[row * 96 + kept[k]], got[row * kept.length + k], 0f, "row " + row + " col " + kept[k]);
                    }
                }
            }
        }
    }

    /** Both ways of slicing (runs copied by the kernel, short rows gathered) against a plain loop, on every axis. */
    @Test
    void sliceRunsAndGatherMatchAPlainLoop() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withDtype(DataType.BFLOAT16));
        String name = WeightNames.mlp(0, "gate_proj", "weight"); // [96, 64]
        try (Checkpoint c = Checkpoint.open(dir)) {
            ByteBuffer all = c.raw(name);
            short[] v = new short[96 * 64];
            all.order(ByteOrder.LITTLE_ENDIAN).asShortBuffer().get(v);
            StoredBytes s = c.stored(name);
            long[] dims = {96, 64};
            for (int axis = 0; axis < 2; axis++) {
                long[] kept = axis == 0 ? new long[] {0, 1, 2, 10, 50, 51, 95} : new long[] {3, 4, 5, 6, 30, 63};
                for (long minRun : new long[] {0, Long.MAX_VALUE}) {
                    Path out = tmp.resolve("s" + axis + "-" + (minRun == 0));
                    try (FileChannel ch = FileChannel.open(out, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                        StoredSlice.write(s, dims, axis, kept, 2, ch, minRun);
                    }
                    short[] got = new short[(int) (Files.size(out) / 2)];
                    ByteBuffer.wrap(Files.readAllBytes(out)).order(ByteOrder.LITTLE_ENDIAN).asShortBuffer().get(got);
                    int i = 0;
                    for (int row = 0; row < 96; row++) {
                        for (int col = 0; col < 64; col++) {
                            long unit = axis == 0 ? row : col;
                            if (java.util.Arrays.binarySearch(kept, unit) >= 0) {
                                assertEquals(v[row * 64 + col], got[i++], "axis " + axis + " row " + row + " col " + col);
                            }
                        }
                    }
                    assertEquals(got.length, i);
                }
            }
        }
    }

    /** A view of a source without stored bytes: every tensor is loaded, converted and stored back (the old save). */
    private record ConvertOnly(TensorSource s) implements TensorSource {
        @Override
        public Set<String> names() {
            return s.names();
        }

        @Override
        public Shape shape(String name) {
            return s.shape(name);
        }

        @Override
        public DataType storedType(String name) {
            return s.storedType(name);
        }

        @Override
        public NDArray load(String name, NDManager manager, DataType type) {
            return s.load(name, manager, type);
        }
    }
}
