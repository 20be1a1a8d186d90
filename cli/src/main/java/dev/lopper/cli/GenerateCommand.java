package dev.lopper.cli;

import dev.lopper.model.Generation;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import dev.lopper.model.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code lopper generate MODEL --prompt ... --max-tokens N}: greedy continuation. */
@Command(name = "generate", mixinStandardHelpOptions = true, description = "Greedy text continuation of a prompt.")
final class GenerateCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL", description = "HF model directory.")
    Path model;

    @Option(names = "--prompt", required = true, description = "Text to continue.")
    String prompt;

    @Option(names = "--max-tokens", defaultValue = "40", description = "Tokens to generate. Default: ${DEFAULT-VALUE}.")
    int maxTokens;

    @Mixin
    ModelOptions options;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        if (maxTokens < 1) {
            throw new IllegalArgumentException("--max-tokens " + maxTokens + ": expected at least 1");
        }
        try (ModelDir md = ModelDir.open(model); LlamaModel lm = md.loadModel(options.device())) {
            Tokenizer tok = md.tokenizer();
            long[] promptIds = tok.encode(prompt);
            long t0 = System.nanoTime();
            long[] all = Generation.greedy(lm, promptIds, maxTokens);
            double secs = (System.nanoTime() - t0) / 1e9;
            long[] generated = Arrays.copyOfRange(all, promptIds.length, all.length);
            String completion = tok.decode(generated);
            PrintWriter out = spec.commandLine().getOut();
            if (options.json) {
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("prompt", prompt);
                r.put("completion", completion);
                r.put("prompt_ids", promptIds);
                r.put("generated_ids", generated);
                r.put("seconds", secs);
                Output.json(out, r);
            } else {
                out.println(prompt + completion);
                out.flush();
            }
        }
        return 0;
    }
}
