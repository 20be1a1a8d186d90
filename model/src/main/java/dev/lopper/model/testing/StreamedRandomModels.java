package dev.lopper.model.testing;

import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.Family;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import dev.lopper.model.io.DirectBuffers;
import dev.lopper.model.io.SafeTensorsWriter;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Random LLaMA models of real sizes (1B-8B shapes, 128k vocabularies) for the scale benchmarks, written as BF16
 * safetensors shards tensor by tensor in 1 MiB pieces: generating a 16 GB checkpoint holds 1 MiB, where
 * {@link RandomModels#write} holds the whole model in fp32. Values are uniform with the standard deviations
 * {@link RandomModels} uses (fast to draw; a benchmark needs the shapes, not Gaussian tails), each tensor from
 * its own seed (spec seed and name), so the same spec gives the same bytes.
 *
 * <pre>{@code
 * StreamedRandomModels.write(Path.of("/data/llama-8b-shaped"), RandomModels.llama().withLayers(32)
 *         .withHeads(32, 8).withSize(4096, 128, 14336).withShards(4).withDtype(DataType.BFLOAT16));
 * }</pre>
 */
public final class StreamedRandomModels {
    private static final int PIECE = 1 << 20;

    private StreamedRandomModels() {
    }

    /** Writes the model; LLaMA family, BF16, no biases. Returns its config. */
    public static ModelConfig write(Path dir, RandomModels.Spec spec) throws IOException {
        if (spec.family() != Family.LLAMA || spec.dtype() != DataType.BFLOAT16 || spec.qkvBias()) {
            throw new IllegalArgumentException("streamed random models are LLaMA, BF16, without biases; got " + spec.family() + ", "
                    + spec.dtype() + (spec.qkvBias() ? ", qkv bias" : ""));
        }
        ObjectNode json = RandomModels.configJson(spec);
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), json.toPrettyString());
        Files.writeString(dir.resolve("tokenizer.json"), ByteTokenizer.json(spec.vocab()));
        ModelConfig config = ModelConfig.load(dir);
        List<SafeTensorsWriter.Entry> all = entries(spec);
        long total = all.stream().mapToLong(SafeTensorsWriter.Entry::byteLength).sum();
        long shardBytes = (total + spec.shards() - 1) / Math.max(1, spec.shards());
        List<List<SafeTensorsWriter.Entry>> shards = new ArrayList<>();
        List<SafeTensorsWriter.Entry> cur = new ArrayList<>();
        long curBytes = 0;
        for (SafeTensorsWriter.Entry e : all) {
            if (!cur.isEmpty() && curBytes + e.byteLength() > shardBytes) {
                shards.add(cur);
                cur = new ArrayList<>();
                curBytes = 0;
            }
            cur.add(e);
            curBytes += e.byteLength();
        }
        shards.add(cur);
        if (shards.size() == 1) {
            SafeTensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), shards.get(0), Map.of("format", "pt"));
            return config;
        }
        ObjectMapper om = new ObjectMapper();
        ObjectNode index = om.createObjectNode();
        index.putObject("metadata").put("total_size", total);
        ObjectNode weightMap = index.putObject("weight_map");
        for (int i = 0; i < shards.size(); i++) {
            String file = String.format("model-%05d-of-%05d.safetensors", i + 1, shards.size());
            SafeTensorsWriter.write(dir.resolve(file), shards.get(i), Map.of("format", "pt"));
            for (SafeTensorsWriter.Entry e : shards.get(i)) {
                weightMap.put(e.name(), file);
            }
        }
        om.writerWithDefaultPrettyPrinter().writeValue(dir.resolve(Checkpoint.INDEX_FILE).toFile(), index);
        return config;
    }

    private static List<SafeTensorsWriter.Entry> entries(RandomModels.Spec spec) {
        Map<String, double[]> meanStd = new LinkedHashMap<>();
        Map<String, long[]> shapes = new LinkedHashMap<>();
        int h = spec.hidden();
        int q = spec.heads() * spec.headDim();
        int kv = spec.kvHeads() * spec.headDim();
        double in = 1 / Math.sqrt(h);
        put(shapes, meanStd, WeightNames.EMBED, 0, 0.5, spec.vocab(), h);
        for (int i = 0; i < spec.layers(); i++) {
            put(shapes, meanStd, WeightNames.inputNorm(i), 1, 0.1, h);
            put(shapes, meanStd, WeightNames.attn(i, "q_proj", "weight"), 0, in, q, h);
            put(shapes, meanStd, WeightNames.attn(i, "k_proj", "weight"), 0, in, kv, h);
            put(shapes, meanStd, WeightNames.attn(i, "v_proj", "weight"), 0, in, kv, h);
            put(shapes, meanStd, WeightNames.attn(i, "o_proj", "weight"), 0, 1 / Math.sqrt(q), h, q);
            put(shapes, meanStd, WeightNames.postAttentionNorm(i), 1, 0.1, h);
            put(shapes, meanStd, WeightNames.mlp(i, "gate_proj", "weight"), 0, in, spec.intermediate(), h);
            put(shapes, meanStd, WeightNames.mlp(i, "up_proj", "weight"), 0, in, spec.intermediate(), h);
            put(shapes, meanStd, WeightNames.mlp(i, "down_proj", "weight"), 0, 1 / Math.sqrt(spec.intermediate()), h, spec.intermediate());
        }
        put(shapes, meanStd, WeightNames.FINAL_NORM, 1, 0.1, h);
        if (!spec.tied()) {
            put(shapes, meanStd, WeightNames.LM_HEAD, 0, in, spec.vocab(), h);
        }
        List<SafeTensorsWriter.Entry> out = new ArrayList<>();
        for (Map.Entry<String, long[]> e : shapes.entrySet()) {
            String name = e.getKey();
            double[] ms = meanStd.get(name);
            Shape shape = new Shape(e.getValue());
            long seed = spec.seed() * 0x9E3779B97F4A7C15L + name.hashCode();
            out.add(new SafeTensorsWriter.Entry(name, DataType.BFLOAT16, shape, ch -> fill(ch, shape.size(), ms[0], ms[1], seed)));
        }
        return out;
    }

    private static void put(Map<String, long[]> shapes, Map<String, double[]> meanStd, String name, double mean, double std, long... dims) {
        shapes.put(name, dims);
        meanStd.put(name, new double[]{mean, std});
    }

    /** {@code n} BF16 values, uniform with the given mean and standard deviation, written in 1 MiB pieces. */
    private static void fill(FileChannel ch, long n, double mean, double std, long seed) throws IOException {
        SplittableRandom rnd = new SplittableRandom(seed);
        float half = (float) (std * Math.sqrt(3)); // uniform on [-a, a] has standard deviation a / sqrt(3)
        float m = (float) mean;
        ByteBuffer buf = ByteBuffer.allocateDirect(PIECE).order(ByteOrder.LITTLE_ENDIAN);
        try {
            for (long done = 0; done < n; ) {
                buf.clear();
                long k = Math.min(n - done, PIECE / 2);
                for (long j = 0; j < k; j++) {
                    float v = m + half * (2 * (float) rnd.nextDouble() - 1);
                    int bits = Float.floatToRawIntBits(v);
                    buf.putShort((short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16));
                }
                buf.flip();
                SafeTensorsWriter.writeFully(ch, buf);
                done += k;
            }
        } finally {
            DirectBuffers.free(buf);
        }
    }
}
