package dev.lopper.export;

import dev.lopper.model.WeightNames;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;
import dev.lopper.model.layer.LayerOp;
import dev.lopper.model.layer.LayerSpec;
import dev.lopper.model.layer.Param;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/**
 * Writes a LLaMA-family model as a TorchScript archive that {@code torch.jit.load} (Python) and libtorch
 * ({@code torch::jit::load}, DJL's PyTorch engine) load and run: {@code forward(input_ids [B, T] int64) -> logits
 * [B, T, vocab] fp32}, computing what {@code LlamaModel.logits} computes.
 *
 * <p>The archive is what torch.jit.save writes (file format version 4), built without Python: a zip (entries
 * stored, not compressed) of
 * <ul>
 *   <li>{@code code/__torch__.py}: the TorchScript source of class {@code LopperLlama}, generated per model with
 *       each layer's shape written into the code (pruned models have a different shape per layer);</li>
 *   <li>{@code data.pkl}: the module object (pickle protocol 2), tensors as persistent ids of storages;</li>
 *   <li>{@code data/<n>}: raw little-endian fp32 storages; {@code constants.pkl}: an empty tuple;
 *       {@code version}.</li>
 * </ul>
 * Attributes are flat, named after the HF tensors with dots as underscores
 * ({@code model_layers_3_self_attn_q_proj_weight}), in HF layout ([out, in]); a tied LM head shares the
 * embedding's storage.
 */
public final class TorchScriptExporter {
    public static final String FILE = "model.pt";
    static final String CLASS = "LopperLlama";
    /** torch.jit.save's file format version for code that uses aten::div with true division (>= 4). */
    static final String VERSION = "4";
    private static final String ROOT = "model/";

    private final ModelConfig config;
    private final Weights weights;
    /** Attribute name -> HF tensor name, in declaration order. */
    private final List<String[]> attrs = new ArrayList<>();
    /** HF tensor name -> shape, for the attributes declared. */
    private final Map<String, long[]> shapes = new HashMap<>();

    private TorchScriptExporter(ModelConfig config, TensorSource source) {
        this.config = config;
        this.weights = new Weights(source);
    }

    /** Writes the archive to {@code file}. */
    public static void write(ModelConfig config, TensorSource source, Path file) throws IOException {
        new TorchScriptExporter(config, source).write(file);
    }

    static String attrName(String hfName) {
        return hfName.replace('.', '_');
    }

    private void write(Path file) throws IOException {
        String code = code();
        boolean tied = !weights.has(WeightNames.LM_HEAD);
        try (ZipOutputStream zip = new ZipOutputStream(new BufferedOutputStream(Files.newOutputStream(file), 1 << 20))) {
            zip.setMethod(ZipOutputStream.STORED);
            stored(zip, "version", ByteBuffer.wrap((VERSION + "\n").getBytes(StandardCharsets.US_ASCII)));
            stored(zip, "code/__torch__.py", ByteBuffer.wrap(code.getBytes(StandardCharsets.UTF_8)));
            stored(zip, "constants.pkl", ByteBuffer.wrap(new Pickle().emptyTuple().stop().bytes()));

            Pickle p = new Pickle();
            p.global("__torch__", CLASS).emptyTuple().newObj().emptyDict().mark();
            p.string("training").bool(false);
            int storage = 0;
            int embedMemo = -1;
            for (String[] a : attrs) {
                String name = a[0];
                String hf = a[1];
                p.string(name);
                if (name.equals("inv_freq")) {
                    float[] inv = invFreq();
                    ByteBuffer b = ByteBuffer.allocate(inv.length * 4).order(ByteOrder.LITTLE_ENDIAN);
                    for (float f : inv) {
                        b.putFloat(f);
                    }
                    b.flip();
                    tensor(p, Integer.toString(storage), inv.length, inv.length);
                    stored(zip, "data/" + storage++, b);
                } else if (name.equals("lm_head") && tied) {
                    tensorFromMemo(p, embedMemo, config.vocabSize(), config.hiddenSize());
                } else {
                    long[] shape = expectedShape(hf);
                    ByteBuffer data = weights.get(hf, shape);
                    int memo = tensor(p, Integer.toString(storage), data.remaining() / 4, shape);
                    if (hf.equals(WeightNames.EMBED)) {
                        embedMemo = memo;
                    }
                    stored(zip, "data/" + storage++, data);
                }
            }
            p.setItems().build().stop();
            stored(zip, "data.pkl", ByteBuffer.wrap(p.bytes()));
        }
    }

    /** Pickles a tensor over a new storage; returns the memo index of the storage. */
    private static int tensor(Pickle p, String key, long numel, long... shape) {
        p.global("torch._utils", "_rebuild_tensor_v2").mark();
        p.mark().string("storage").global("torch", "FloatStorage").string(key).string("cpu").integer(numel).tuple().binPersId();
        int memo = p.put();
        rest(p, shape);
        return memo;
    }

    private static void tensorFromMemo(Pickle p, int memo, long... shape) {
        p.global("torch._utils", "_rebuild_tensor_v2").mark().get(memo);
        rest(p, shape);
    }

    /** offset, size, stride (contiguous), requires_grad, backward hooks; then the call. */
    private static void rest(Pickle p, long... shape) {
        long[] stride = new long[shape.length];
        long s = 1;
        for (int i = shape.length - 1; i >= 0; i--) {
            stride[i] = s;
            s *= shape[i];
        }
        p.integer(0).ints(shape).ints(stride).bool(false).global("collections", "OrderedDict").emptyTuple().reduce();
        p.tuple().reduce();
    }

    private static void stored(ZipOutputStream zip, String name, ByteBuffer data) throws IOException {
        CRC32 crc = new CRC32();
        crc.update(data.duplicate());
        ZipEntry e = new ZipEntry(ROOT + name);
        e.setMethod(ZipEntry.STORED);
        e.setSize(data.remaining());
        e.setCompressedSize(data.remaining());
        e.setCrc(crc.getValue());
        e.setTime(315532800000L); // 1980-01-01, as torch.jit.save: archives are reproducible
        zip.putNextEntry(e);
        write(zip, data.duplicate());
        zip.closeEntry();
    }

    private static void write(OutputStream out, ByteBuffer data) throws IOException {
        byte[] chunk = new byte[1 << 16];
        while (data.hasRemaining()) {
            int n = Math.min(chunk.length, data.remaining());
            data.get(chunk, 0, n);
            out.write(chunk, 0, n);
        }
    }

    private float[] invFreq() {
        double[] inv = config.ropeScaling().inverseFrequencies(config.headDim(), config.ropeTheta());
        float[] f = new float[inv.length];
        for (int i = 0; i < inv.length; i++) {
            f[i] = (float) inv[i];
        }
        return f;
    }

    private long[] expectedShape(String hf) {
        long[] shape = shapes.get(hf);
        if (shape == null) {
            throw new IllegalStateException("unexpected tensor " + hf);
        }
        return shape;
    }

    /** Declares an attribute for HF tensor {@code hf} of shape {@code shape}; returns the expression that reads it. */
    private String attr(String hf, long... shape) {
        String name = attrName(hf);
        attrs.add(new String[] {name, hf});
        shapes.put(hf, shape);
        return "self." + name;
    }

    private String attr(LayerSpec spec, Param p) {
        return p == null ? "None" : attr(spec.tensorName(p), spec.shapeOf(p));
    }

    /** Layer statements: the translation of the layer's {@link LayerSpec} ops, values named {@code l<i>_<value>}. */
    private void layer(StringBuilder f, LayerSpec spec) {
        LayerShape s = spec.shape();
        String p = "l" + spec.layer() + "_";
        f.append("    # layer ").append(spec.layer()).append(": ").append(s.numHeads()).append(" heads, ").append(s.numKvHeads())
                .append(" kv heads, ").append(s.intermediateSize()).append(" channels\n");
        f.append("    ").append(p).append(LayerSpec.INPUT).append(" = h\n");
        for (LayerOp op : spec.ops()) {
            String expr;
            if (op instanceof LayerOp.RmsNorm n) {
                expr = "self.rms_norm(" + p + n.in() + ", " + attr(spec, n.weight()) + ")";
            } else if (op instanceof LayerOp.Linear l) {
                expr = "torch.linear(" + p + l.in() + ", " + attr(spec, l.weight()) + ", " + attr(spec, l.bias()) + ")";
            } else if (op instanceof LayerOp.SplitHeads sh) {
                String in = p + sh.in();
                expr = "torch.transpose(torch.reshape(" + in + ", [torch.size(" + in + ", 0), torch.size(" + in + ", 1), "
                        + sh.heads() + ", " + spec.headDim() + "]), 1, 2)";
            } else if (op instanceof LayerOp.Rope r) {
                expr = "self.rope(" + p + r.in() + ", cos, sin)";
            } else if (op instanceof LayerOp.Attention a) {
                expr = "self.attention(" + p + a.q() + ", " + p + a.k() + ", " + p + a.v() + ", " + a.heads() + ", "
                        + a.kvHeads() + ", mask)";
            } else if (op instanceof LayerOp.SwiGlu g) {
                expr = "torch.mul(torch.mul(torch.sigmoid(" + p + g.gate() + "), " + p + g.gate() + "), " + p + g.up() + ")";
            } else if (op instanceof LayerOp.Add a) {
                expr = "torch.add(" + p + a.a() + ", " + p + a.b() + ")";
            } else if (op instanceof LayerOp.AddParam a) {
                expr = "torch.add(" + p + a.in() + ", " + attr(spec, a.weight()) + ")";
            } else if (op instanceof LayerOp.Tap) {
                continue; // calibration taps: nothing to export
            } else {
                throw new IllegalStateException("no TorchScript translation for " + op);
            }
            f.append("    ").append(p).append(op.out()).append(" = ").append(expr).append("\n");
        }
        f.append("    h = ").append(p).append(spec.output()).append("\n");
    }

    /** The TorchScript source of code/__torch__.py for this model. */
    String code() {
        attrs.clear();
        shapes.clear();
        int d = config.headDim();
        StringBuilder f = new StringBuilder();
        f.append("  def forward(self: __torch__.").append(CLASS).append(",\n    input_ids: Tensor) -> Tensor:\n");
        f.append("    t = torch.size(input_ids, 1)\n");
        f.append("    pos = torch.arange(t, dtype=6)\n");
        attrs.add(new String[] {"inv_freq", null});
        f.append("    angles = torch.mul(torch.unsqueeze(pos, 1), torch.unsqueeze(self.inv_freq, 0))\n");
        f.append("    emb = torch.cat([angles, angles], -1)\n");
        f.append("    cos = torch.cos(emb)\n");
        f.append("    sin = torch.sin(emb)\n");
        f.append("    allowed = torch.le(torch.unsqueeze(pos, 0), torch.unsqueeze(pos, 1))\n");
        if (config.slidingWindow() > 0) {
            f.append("    in_window = torch.lt(torch.sub(torch.unsqueeze(pos, 1), torch.unsqueeze(pos, 0)), ")
                    .append(config.slidingWindow()).append(".)\n");
            f.append("    allowed = torch.logical_and(allowed, in_window)\n");
        }
        f.append("    mask = torch.where(allowed, 0., -inf)\n");
        int h = config.hiddenSize();
        f.append("    h = torch.embedding(").append(attr(WeightNames.EMBED, config.vocabSize(), h)).append(", input_ids)\n");
        for (int i = 0; i < config.numLayers(); i++) {
            layer(f, LayerSpec.of(config, i));
        }
        f.append("    n = self.rms_norm(h, ").append(attr(WeightNames.FINAL_NORM, h)).append(")\n");
        attrs.add(new String[] {"lm_head", WeightNames.LM_HEAD});
        shapes.put(WeightNames.LM_HEAD, new long[] {config.vocabSize(), h});
        f.append("    return torch.linear(n, self.lm_head)\n");

        f.append("  def rms_norm(self: __torch__.").append(CLASS).append(",\n    x: Tensor,\n    w: Tensor) -> Tensor:\n");
        f.append("    ms = torch.mean(torch.mul(x, x), [-1], True)\n");
        f.append("    return torch.mul(torch.div(x, torch.sqrt(torch.add(ms, ").append(config.rmsNormEps()).append("))), w)\n");

        f.append("  def rope(self: __torch__.").append(CLASS).append(",\n    x: Tensor,\n    cos: Tensor,\n    sin: Tensor) -> Tensor:\n");
        f.append("    x1 = torch.slice(x, 3, 0, ").append(d / 2).append(")\n");
        f.append("    x2 = torch.slice(x, 3, ").append(d / 2).append(", ").append(d).append(")\n");
        f.append("    rotated = torch.cat([torch.neg(x2), x1], -1)\n");
        f.append("    return torch.add(torch.mul(x, cos), torch.mul(rotated, sin))\n");

        f.append("  def attention(self: __torch__.").append(CLASS).append(",\n    q: Tensor,\n    k: Tensor,\n    v: Tensor,\n")
                .append("    heads: int,\n    kv_heads: int,\n    mask: Tensor) -> Tensor:\n");
        f.append("    b = torch.size(q, 0)\n");
        f.append("    t = torch.size(q, 2)\n");
        f.append("    group = torch.floordiv(heads, kv_heads)\n");
        f.append("    if torch.gt(group, 1):\n");
        f.append("      k = torch.repeat_interleave(k, group, 1)\n");
        f.append("      v = torch.repeat_interleave(v, group, 1)\n");
        f.append("    else:\n      pass\n");
        f.append("    scores = torch.matmul(q, torch.transpose(k, 2, 3))\n");
        f.append("    scores = torch.add(torch.mul(scores, ").append(1.0 / Math.sqrt(d)).append("), mask)\n");
        f.append("    out = torch.matmul(torch.softmax(scores, -1), v)\n");
        f.append("    return torch.reshape(torch.transpose(out, 1, 2), [b, t, torch.mul(heads, ").append(d).append(")])\n");

        StringBuilder c = new StringBuilder();
        c.append("class ").append(CLASS).append("(Module):\n");
        c.append("  __parameters__ = []\n");
        c.append("  __buffers__ = []\n");
        c.append("  training : bool\n");
        for (String[] a : attrs) {
            c.append("  ").append(a[0]).append(" : Tensor\n");
        }
        return c.append(f).toString();
    }
}
