package dev.lopper.cli;

import ai.djl.ndarray.types.DataType;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelStats;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.Checkpoint;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;

/** {@code lopper inspect MODEL}: what a model directory holds, without loading weights. */
@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = "Show a model's family, per-layer heads/KV heads/channels, parameters, dtypes and bytes.")
final class InspectCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL", description = "HF model directory (config.json, *.safetensors).")
    Path model;

    @Mixin
    ModelOptions options;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        try (ModelDir md = ModelDir.open(model)) {
            Map<String, Object> r = describe(md);
            PrintWriter out = spec.commandLine().getOut();
            if (options.json) {
                Output.json(out, r);
            } else {
                print(out, md.config(), r);
            }
        }
        return 0;
    }

    static Map<String, Object> describe(ModelDir md) {
        ModelConfig c = md.config();
        Checkpoint ck = md.checkpoint();
        Map<String, Long> dtypes = new TreeMap<>();
        for (String n : ck.names()) {
            DataType t = ck.storedType(n);
            dtypes.merge(dev.lopper.model.io.SafeTensors.name(t), ck.shape(n).size(), Long::sum);
        }
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("path", md.path().toString());
        r.put("family", c.family().modelType());
        r.put("layers", c.numLayers());
        r.put("hidden_size", c.hiddenSize());
        r.put("head_dim", c.headDim());
        r.put("vocab_size", c.vocabSize());
        r.put("tied_embeddings", c.tieWordEmbeddings());
        r.put("qkv_bias", c.qkvBias());
        r.put("rope", Map.of("theta", c.ropeTheta(), "scaling", c.ropeScaling().type()));
        r.put("uniform_layers", c.isUniform());
        List<Map<String, Object>> layers = new ArrayList<>();
        for (int i = 0; i < c.numLayers(); i++) {
            LayerShape s = c.layer(i);
            Map<String, Object> l = new LinkedHashMap<>();
            l.put("layer", i);
            l.put("heads", s.numHeads());
            l.put("kv_heads", s.numKvHeads());
            l.put("channels", s.intermediateSize());
            l.put("o_proj_bias", s.oProjBias());
            l.put("down_proj_bias", s.downProjBias());
            l.put("parameters", ModelStats.layerParameters(c, s));
            layers.add(l);
        }
        r.put("per_layer", layers);
        r.put("parameters", ModelStats.parameters(c));
        r.put("checkpoint_elements", ck.names().stream().mapToLong(n -> ck.shape(n).size()).sum());
        r.put("dtypes", dtypes);
        r.put("bytes", ck.dataBytes());
        return r;
    }

    @SuppressWarnings("unchecked")
    private static void print(PrintWriter out, ModelConfig c, Map<String, Object> r) {
        out.printf("model       %s%n", r.get("path"));
        out.printf("family      %s (%d layers, hidden %d, head_dim %d, vocab %d, %s embeddings%s)%n", c.family().modelType(),
                c.numLayers(), c.hiddenSize(), c.headDim(), c.vocabSize(), c.tieWordEmbeddings() ? "tied" : "untied",
                c.qkvBias() ? ", q/k/v biases" : "");
        out.printf("rope        theta %s, scaling %s%n", c.ropeTheta(), c.ropeScaling().type());
        out.printf("parameters  %,d%n", (Long) r.get("parameters"));
        out.printf("weights     %s, %,d bytes%n", r.get("dtypes"), (Long) r.get("bytes"));
        out.println("layer  heads  kv_heads  channels  biases       parameters");
        for (Map<String, Object> l : (List<Map<String, Object>>) r.get("per_layer")) {
            String biases = ((Boolean) l.get("o_proj_bias") ? "o" : "-") + ((Boolean) l.get("down_proj_bias") ? "d" : "-");
            out.printf("%5d  %5d  %8d  %8d  %-11s  %,d%n", l.get("layer"), l.get("heads"), l.get("kv_heads"), l.get("channels"),
                    biases, (Long) l.get("parameters"));
        }
        out.flush();
    }
}
