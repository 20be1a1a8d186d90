package dev.lopper.export;

import ai.onnx.proto.OnnxMl.ModelProto;
import ai.onnx.proto.OnnxMl.OperatorSetIdProto;
import ai.onnx.proto.OnnxMl.StringStringEntryProto;
import dev.lopper.export.gguf.Half;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.layer.LayerOp;
import dev.lopper.model.layer.LayerSpec;
import dev.lopper.model.layer.Param;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static dev.lopper.export.OnnxGraph.BFLOAT16;
import static dev.lopper.export.OnnxGraph.FLOAT;
import static dev.lopper.export.OnnxGraph.FLOAT16;
import static dev.lopper.export.OnnxGraph.INT64;
import static dev.lopper.export.OnnxGraph.attr;

/**
 * Writes a LLaMA-family model (LLaMA, Mistral, Qwen2, Qwen3, Phi-3; per-layer shapes and FLAP biases included) as an
 * ONNX graph that computes exactly what {@code LlamaModel.logits} computes (see docs/EXPORT.md for names and shapes).
 * Each decoder layer is the translation of its {@link LayerSpec}'s ops.
 *
 * <ul>
 *   <li>logits variant: {@code input_ids} [batch, sequence] int64, {@code attention_mask} [batch, sequence] int64
 *       -> {@code logits} [batch, sequence, vocab] fp32;</li>
 *   <li>KV-cache variant: additionally {@code past_key_values.<i>.key|value} [batch, kv_heads_i, past_sequence,
 *       head_dim] in and {@code present.<i>.key|value} [batch, kv_heads_i, past_sequence + sequence, head_dim] out,
 *       with {@code attention_mask} [batch, past_sequence + sequence]; layers with no KV heads (all heads pruned)
 *       have no cache entries.</li>
 * </ul>
 * Positions are {@code past_sequence .. past_sequence + sequence - 1} (as in Lopper's forward pass, padding does
 * not shift them). Linear weights are stored transposed ([in, out]) under their HF names, as MatMul wants them.
 * Opset 17, IR version 8; weights go to {@code model.onnx.data} when they would push the file past protobuf's
 * 2 GB limit. With {@link ExportDtype#F16} / {@link ExportDtype#BF16} the weight matrices (embedding, linear weights,
 * LM head) are stored in half precision and cast to fp32 by a Cast node right after the initializer: the file is
 * about half the size, and ONNX Runtime's CPU provider, which has no fp16 MatMul, still runs every op in fp32.
 * Norm weights and biases stay fp32 (as in GGUF).
 */
public final class OnnxExporter {
    public static final int OPSET = 17;
    public static final int IR_VERSION = 8;
    public static final String MODEL_FILE = "model.onnx";
    public static final String DATA_FILE = "model.onnx.data";
    /** Above this many bytes of weights, external data is used (protobuf's hard limit is 2 GiB). */
    public static final long EXTERNAL_DATA_THRESHOLD = 2L * 1024 * 1024 * 1024 - 64L * 1024 * 1024;

    private final ModelConfig config;
    private final Weights weights;
    private final boolean kvCache;
    private final ExportDtype dtype;
    private OnnxGraph g;

    private OnnxExporter(ModelConfig config, TensorSource source, boolean kvCache, ExportDtype dtype) {
        if (dtype == ExportDtype.Q8_0) {
            throw new IllegalArgumentException("--dtype q8_0 is not available for ONNX; expected f32, f16 or bf16");
        }
        this.config = config;
        this.weights = new Weights(source);
        this.kvCache = kvCache;
        this.dtype = dtype;
    }

    /**
     * Writes {@code dir/model.onnx} (and {@code dir/model.onnx.data} when needed or forced); {@code dir} must exist.
     *
     * @param forceExternal put weights in {@code model.onnx.data} even when the model is small
     * @return the files written
     */
    public static List<Path> write(ModelConfig config, TensorSource source, Path dir, boolean kvCache,
                                   boolean forceExternal) throws IOException {
        return write(config, source, dir, kvCache, forceExternal, ExportDtype.F32);
    }

    /** As above, with the weight matrices stored as {@code dtype} (f32, f16 or bf16). */
    public static List<Path> write(ModelConfig config, TensorSource source, Path dir, boolean kvCache,
                                   boolean forceExternal, ExportDtype dtype) throws IOException {
        return new OnnxExporter(config, source, kvCache, dtype).write(dir, forceExternal);
    }

    private List<Path> write(Path dir, boolean forceExternal) throws IOException {
        // decided on fp32 bytes even for f16/bf16: conservative (external data a little earlier than needed)
        boolean external = forceExternal || weights.totalFloat32Bytes() > EXTERNAL_DATA_THRESHOLD;
        Path data = dir.resolve(DATA_FILE);
        ModelProto model;
        try (OnnxGraph graph = new OnnxGraph(kvCache ? "lopper_llama_kv" : "lopper_llama", external ? data : null)) {
            g = graph;
            buildGraph();
            model = ModelProto.newBuilder()
                    .setIrVersion(IR_VERSION)
                    .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(OPSET))
                    .setProducerName("lopper")
                    .setProducerVersion("0.1.0")
                    .setDocString("LLaMA-family causal LM exported by Lopper (" + (kvCache ? "with KV cache" : "logits") + ")")
                    .addMetadataProps(StringStringEntryProto.newBuilder().setKey("lopper.config").setValue(config.toJson().toString()))
                    .addMetadataProps(StringStringEntryProto.newBuilder().setKey("lopper.variant").setValue(kvCache ? "onnx-kv" : "onnx"))
                    .addMetadataProps(StringStringEntryProto.newBuilder().setKey("lopper.dtype").setValue(dtype.cliName()))
                    .setGraph(graph.build())
                    .build();
        }
        Path file = dir.resolve(MODEL_FILE);
        try (OutputStream out = Files.newOutputStream(file)) {
            model.writeTo(out);
        }
        return external ? List.of(file, data) : List.of(file);
    }

    private void buildGraph() throws IOException {
        int hidden = config.hiddenSize();
        int d = config.headDim();
        g.input("input_ids", INT64, "batch", "sequence");
        g.input("attention_mask", INT64, "batch", kvCache ? "total_sequence" : "sequence");
        if (kvCache) {
            for (int i = 0; i < config.numLayers(); i++) {
                int kv = config.layer(i).numKvHeads();
                if (kv > 0) {
                    g.input(pastName(i, "key"), FLOAT, "batch", (long) kv, "past_sequence", (long) d);
                    g.input(pastName(i, "value"), FLOAT, "batch", (long) kv, "past_sequence", (long) d);
                }
            }
        }
        g.output("logits", FLOAT, "batch", "sequence", (long) config.vocabSize());

        // positions: queries at past..total-1, keys at 0..total-1 (total = attention_mask's length)
        String t = g.op("Shape", "input_ids", attr("start", 1), attr("end", 2));
        String s = g.op("Shape", "attention_mask", attr("start", 1), attr("end", 2));
        String past = g.op("Sub", s, t);
        String zero = g.longScalar(0);
        String one = g.longScalar(1);
        String axis0 = g.longs(0);
        String qPos = g.op("Range", new String[] {g.op("Squeeze", past, axis0), g.op("Squeeze", s, axis0), one}); // [T]
        String kPos = g.op("Range", new String[] {zero, g.op("Squeeze", s, axis0), one}); // [S]
        String qCol = g.op("Unsqueeze", qPos, g.longs(1)); // [T, 1]
        String kRow = g.op("Unsqueeze", kPos, axis0); // [1, S]

        // RoPE tables [T, headDim] from inverse frequencies, in fp32 as Rope.java computes them
        double[] inv = config.ropeScaling().inverseFrequencies(d, config.ropeTheta());
        float[] invF = new float[inv.length];
        for (int i = 0; i < inv.length; i++) {
            invF[i] = (float) inv[i];
        }
        String invFreq = g.floats(invF, 1, inv.length);
        String angles = g.op("Mul", g.op("Cast", qCol, attr("to", FLOAT)), invFreq); // [T, D/2]
        String emb = g.op("Concat", new String[] {angles, angles}, attr("axis", -1)); // [T, D]
        String cos = g.op("Cos", emb);
        String sin = g.op("Sin", emb);

        String mask = mask(qCol, kRow); // [B, 1, T, S]

        String embed = matrix(WeightNames.EMBED, weights.get(WeightNames.EMBED, config.vocabSize(), hidden),
                config.vocabSize(), hidden);
        String h = g.op("Gather", embed, "input_ids", attr("axis", 0)); // [B, T, hidden]
        for (int i = 0; i < config.numLayers(); i++) {
            h = layer(i, h, cos, sin, mask);
        }
        String normed = rmsNorm(h, WeightNames.FINAL_NORM, hidden);
        String headT;
        if (weights.has(WeightNames.LM_HEAD)) {
            headT = matrix(WeightNames.LM_HEAD, weights.transposed(WeightNames.LM_HEAD, config.vocabSize(), hidden),
                    hidden, config.vocabSize());
        } else {
            // tied: reuse the embedding (ONNX Runtime folds the transpose once, at session start)
            headT = g.op("Transpose", embed, attr("perm", 1, 0));
        }
        g.opTo("logits", "MatMul", new String[] {normed, headT});
    }

    /**
     * The additive mask [B, 1, T, S]: causal (and Mistral's window) as -inf, padded keys as -1e30 except on the
     * diagonal, exactly like {@code Masks.causal}.
     */
    private String mask(String qCol, String kRow) {
        String allowed = g.op("LessOrEqual", kRow, qCol); // [T, S]
        if (config.slidingWindow() > 0) {
            String inWindow = g.op("Less", g.op("Sub", qCol, kRow), g.longScalar(config.slidingWindow()));
            allowed = g.op("And", allowed, inWindow);
        }
        String causal = g.op("Where", new String[] {allowed, g.scalar(0f), g.scalar(Float.NEGATIVE_INFINITY)});
        String am = g.op("Cast", "attention_mask", attr("to", FLOAT)); // [B, S]
        String blocked = g.op("Mul", g.op("Sub", g.scalar(1f), am), g.scalar(-1e30f));
        String blocked4 = g.op("Unsqueeze", blocked, g.longs(1, 2)); // [B, 1, 1, S]
        String offDiagonal = g.op("Cast", g.op("Not", g.op("Equal", qCol, kRow)), attr("to", FLOAT)); // [T, S]
        return g.op("Add", causal, g.op("Mul", blocked4, offDiagonal));
    }

    /** Layer {@code i}: the translation of its {@link LayerSpec}'s ops to ONNX nodes. */
    private String layer(int i, String x, String cos, String sin, String mask) throws IOException {
        LayerSpec spec = LayerSpec.of(config, i);
        Map<String, String> v = new HashMap<>();
        v.put(LayerSpec.INPUT, x);
        for (LayerOp op : spec.ops()) {
            String out;
            if (op instanceof LayerOp.RmsNorm n) {
                out = rmsNorm(v.get(n.in()), spec.tensorName(n.weight()), spec.shapeOf(n.weight())[0]);
            } else if (op instanceof LayerOp.Linear l) {
                out = linear(v.get(l.in()), spec, l.weight(), l.bias());
            } else if (op instanceof LayerOp.SplitHeads h) {
                out = heads(v.get(h.in()), h.heads());
            } else if (op instanceof LayerOp.Rope r) {
                out = rope(v.get(r.in()), cos, sin);
            } else if (op instanceof LayerOp.Attention a) {
                out = attention(i, a, v.get(a.q()), v.get(a.k()), v.get(a.v()), mask);
            } else if (op instanceof LayerOp.SwiGlu sw) {
                String gate = v.get(sw.gate());
                out = g.op("Mul", g.op("Mul", g.op("Sigmoid", gate), gate), v.get(sw.up()));
            } else if (op instanceof LayerOp.Add a) {
                out = g.op("Add", v.get(a.a()), v.get(a.b()));
            } else if (op instanceof LayerOp.AddParam a) {
                out = g.op("Add", v.get(a.in()), bias(spec.tensorName(a.weight()), spec.shapeOf(a.weight())[0]));
            } else if (op instanceof LayerOp.Tap) {
                continue; // calibration taps: nothing to export
            } else {
                throw new IllegalStateException("no ONNX translation for " + op);
            }
            v.put(op.out(), out);
        }
        return v.get(spec.output());
    }

    /** Grouped-query causal attention over head-split q, k, v (after RoPE); returns [B, T, heads * headDim]. */
    private String attention(int i, LayerOp.Attention a, String q, String k, String v, String mask) {
        long d = config.headDim();
        if (kvCache) {
            k = g.opTo(presentName(i, "key"), "Concat", new String[] {pastName(i, "key"), k}, attr("axis", 2));
            v = g.opTo(presentName(i, "value"), "Concat", new String[] {pastName(i, "value"), v}, attr("axis", 2));
            g.output(presentName(i, "key"), FLOAT, "batch", (long) a.kvHeads(), "total_sequence", d);
            g.output(presentName(i, "value"), FLOAT, "batch", (long) a.kvHeads(), "total_sequence", d);
        }
        int group = a.heads() / a.kvHeads();
        if (group > 1) {
            k = repeatKv(k, a.heads(), group);
            v = repeatKv(v, a.heads(), group);
        }
        String scores = g.op("MatMul", q, g.op("Transpose", k, attr("perm", 0, 1, 3, 2)));
        scores = g.op("Add", g.op("Mul", scores, g.scalar((float) (1.0 / Math.sqrt(d)))), mask);
        String out = g.op("MatMul", g.op("Softmax", scores, attr("axis", -1)), v); // [B, H, T, D]
        out = g.op("Transpose", out, attr("perm", 0, 2, 1, 3));
        return g.op("Reshape", out, g.longs(0, 0, a.heads() * d));
    }

    /** [B, T, n * D] -> [B, n, T, D]. */
    private String heads(String x, int n) {
        return g.op("Transpose", g.op("Reshape", x, g.longs(0, 0, n, config.headDim())), attr("perm", 0, 2, 1, 3));
    }

    /** HF's repeat_kv: [B, kv, S, D] -> [B, kv * group, S, D], query head j reading KV head j / group. */
    private String repeatKv(String x, int heads, int group) {
        String x5 = g.op("Unsqueeze", x, g.longs(2)); // [B, kv, 1, S, D]
        String expanded = g.op("Expand", x5, g.longs(1, 1, group, 1, 1));
        return g.op("Reshape", expanded, g.longs(0, heads, -1, config.headDim()));
    }

    /** x * cos + rotate_half(x) * sin, rotate_half(x) = concat(-x2, x1) over the two halves of the head dim. */
    private String rope(String x, String cos, String sin) {
        long half = config.headDim() / 2;
        String[] halves = g.opN("Split", 2, new String[] {x, g.longs(half, half)}, attr("axis", -1));
        String rotated = g.op("Concat", new String[] {g.op("Neg", halves[1]), halves[0]}, attr("axis", -1));
        return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rotated, sin));
    }

    /** RMSNorm in fp32 over the last axis (of width n): x / sqrt(mean(x^2) + eps) * weight. */
    private String rmsNorm(String x, String weightName, long n) throws IOException {
        String w = g.weight(weightName, weights.get(weightName, n), n);
        // Pow(x, 2) rather than x * x: the same value, and ONNX Runtime fuses Pow-ReduceMean-Add-Sqrt-Div into one
        // SimplifiedLayerNormalization kernel
        String ms = g.op("ReduceMean", g.op("Pow", x, g.scalar(2f)), attr("axes", new long[] {-1}), attr("keepdims", 1));
        String rms = g.op("Sqrt", g.op("Add", ms, g.scalar((float) config.rmsNormEps())));
        return g.op("Mul", g.op("Div", x, rms), w);
    }

    /** x W^T (+ b), with W [out, in] stored transposed under its HF name. */
    private String linear(String x, LayerSpec spec, Param weight, Param bias) throws IOException {
        String name = spec.tensorName(weight);
        long[] shape = spec.shapeOf(weight);
        String w = matrix(name, weights.transposed(name, shape), shape[1], shape[0]);
        String y = g.op("MatMul", x, w);
        if (bias != null) {
            y = g.op("Add", y, bias(spec.tensorName(bias), shape[0]));
        }
        return y;
    }

    /**
     * A weight matrix from fp32 bytes: as is for f32; for f16/bf16 stored in half precision under its HF name and
     * followed by a Cast to fp32, whose output (returned) the graph uses.
     */
    private String matrix(String name, ByteBuffer fp32, long... dims) throws IOException {
        if (dtype == ExportDtype.F32) {
            return g.weight(name, fp32, dims);
        }
        ByteBuffer src = fp32.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer half = ByteBuffer.allocateDirect(src.remaining() / 2).order(ByteOrder.LITTLE_ENDIAN);
        while (src.hasRemaining()) {
            float f = src.getFloat();
            half.putShort(dtype == ExportDtype.F16 ? Half.toHalf(f) : Half.toBFloat16(f));
        }
        half.flip();
        g.weight(name, dtype == ExportDtype.F16 ? FLOAT16 : BFLOAT16, half, dims);
        return g.op("Cast", name, attr("to", FLOAT));
    }

    private String bias(String name, long n) throws IOException {
        return g.weight(name, weights.get(name, n), n);
    }

    public static String pastName(int layer, String kind) {
        return "past_key_values." + layer + "." + kind;
    }

    public static String presentName(int layer, String kind) {
        return "present." + layer + "." + kind;
    }

    /** Layers that have KV-cache inputs/outputs (those with at least one KV head). */
    public static List<Integer> cachedLayers(ModelConfig config) {
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < config.numLayers(); i++) {
            if (config.layer(i).numKvHeads() > 0) {
                out.add(i);
            }
        }
        return out;
    }
}
