package dev.lopper.export;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.Generation;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.testing.Fixtures;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Writes GGUF exports (f32, f16, q8_0) of model directories plus Lopper's own results for scripts/check-gguf:
 * {@code OUT/<name>/<dtype>/model.gguf} and {@code OUT/<name>/reference.json} with the prompt, its token ids, the
 * greedy continuation (16 tokens, as {@code lopper generate}), the test split's ids and Lopper's perplexity on it
 * (the {@code lopper ppl} protocol, seq len 256) and the accepted relative perplexity difference per dtype.
 *
 * <p>Usage: {@code GgufSamples OUT [NAME=MODEL_DIR | dense | sliced | emptied]...}; default: dense, sliced, emptied
 * (see {@link #generated}). {@code -Dlopper.gguf.pplWindows=N} scores only the split's first N windows (Lopper's
 * perplexity and the ids llama.cpp gets are then both over exactly those windows): a quick check.
 */
public final class GgufSamples {
    static final String PROMPT = "And God said";
    static final int SEQ_LEN = 256;
    static final int GREEDY = 16;

    private GgufSamples() {
    }

    public static void main(String[] args) throws Exception {
        Path out = Path.of(args[0]).toAbsolutePath();
        String[] models = args.length > 1 ? Arrays.copyOfRange(args, 1, args.length) : new String[] {"dense", "sliced", "emptied"};
        for (String m : models) {
            String[] kv = m.contains("=") ? m.split("=", 2) : new String[] {m, generated(m, out).toString()};
            sample(Path.of(kv[1]), out.resolve(kv[0]));
            System.out.println("wrote " + out.resolve(kv[0]) + " (model " + kv[1] + ")");
        }
    }

    /**
     * {@code dense}: the fixture; {@code sliced}: it sliced to non-uniform layers with FLAP-style biases;
     * {@code emptied}: as sliced, but layer 1 without attention and layer 2 without MLP, both keeping their bias.
     */
    private static Path generated(String name, Path out) throws Exception {
        Path dense = Fixtures.tinyModel();
        List<LayerShape> shapes = new ArrayList<>(TestModels.nonUniform(ModelConfig.load(dense), 0.5, true));
        switch (name) {
            case "dense" -> {
                return dense;
            }
            case "sliced" -> { }
            case "emptied" -> {
                shapes.set(1, new LayerShape(0, 0, shapes.get(1).intermediateSize(), true, shapes.get(1).downProjBias()));
                shapes.set(2, new LayerShape(shapes.get(2).numHeads(), shapes.get(2).numKvHeads(), 0, shapes.get(2).oProjBias(), true));
            }
            default -> throw new IllegalArgumentException(name + ": expected dense, sliced, emptied or NAME=MODEL_DIR");
        }
        return TestModels.slice(dense, shapes, out.resolve(name + "-model"));
    }

    static void sample(Path model, Path dir) throws Exception {
        Files.createDirectories(dir);
        ObjectMapper json = new ObjectMapper();
        ObjectNode ref = json.createObjectNode();
        // relative perplexity difference accepted per dtype (docs/EXPORT.md): measured at most 0.001% (f32, f16) and
        // 0.065% (q8_0) on the fixture, its slices and FLAP copies; f16 and q8_0 are kept ~10x above that because
        // those models have bf16 weights, which f16 holds exactly
        ObjectNode bounds = ref.putObject("ppl_bounds");
        bounds.put("f32", 0.01);
        bounds.put("f16", 0.005);
        bounds.put("q8_0", 0.01);
        try (ModelDir md = ModelDir.open(model)) {
            for (String d : new String[] {"f32", "f16", "q8_0"}) {
                Exporter.export(md.config(), md.checkpoint(), model, ExportFormat.GGUF, dir.resolve(d), false, ExportDtype.parse(d));
            }
            long[] prompt = md.tokenizer().encode(PROMPT);
            long[] text = md.tokenizer().encode(Files.readString(Fixtures.text("test")));
            try (LlamaModel lm = md.loadModel(Device.cpu())) {
                long[] all = Generation.greedy(lm, prompt, GREEDY);
                ref.put("prompt", PROMPT);
                ref.set("prompt_ids", json.valueToTree(prompt));
                ref.set("greedy_ids", json.valueToTree(Arrays.copyOfRange(all, prompt.length, all.length)));
                ref.put("greedy_text", md.tokenizer().decode(Arrays.copyOfRange(all, prompt.length, all.length)));
                ref.put("seq_len", SEQ_LEN);
                int windows = Math.min(text.length / SEQ_LEN, Integer.getInteger("lopper.gguf.pplWindows", Integer.MAX_VALUE));
                text = Arrays.copyOf(text, windows * SEQ_LEN); // the tail past the last whole window is never scored
                ref.set("ppl_ids", json.valueToTree(text));
                ref.put("ppl", perplexity(lm, text, windows));
                ref.put("ppl_predicted", (long) windows * (SEQ_LEN - 1));
            }
        }
        json.writeValue(dir.resolve("reference.json").toFile(), ref);
    }

    /** Lopper's perplexity protocol (eval's Perplexity): windows of SEQ_LEN, tokens 1..L-1 scored. */
    static double perplexity(LlamaModel lm, long[] ids, int windows) {
        double nll = 0;
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            for (int w = 0; w < windows; w++) {
                try (NDManager s = m.newSubManager()) {
                    NDArray input = s.create(Arrays.copyOfRange(ids, w * SEQ_LEN, (w + 1) * SEQ_LEN), new Shape(1, SEQ_LEN));
                    NDArray logProbs = lm.logits(input).get(new NDIndex(":, :-1, :")).logSoftmax(-1);
                    NDArray picked = logProbs.gather(input.get(new NDIndex(":, 1:")).expandDims(-1), -1);
                    nll -= picked.toType(DataType.FLOAT64, false).sum().getDouble();
                }
            }
        }
        return Math.exp(nll / ((long) windows * (SEQ_LEN - 1)));
    }
}
