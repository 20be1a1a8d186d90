package dev.lopper.cli;

import dev.lopper.eval.Perplexity;
import dev.lopper.eval.PerplexityResult;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelDir;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code lopper ppl MODEL --text FILE --seq-len N}. */
@Command(name = "ppl", mixinStandardHelpOptions = true,
        description = "Perplexity of a text over non-overlapping windows (the last partial window is dropped).")
final class PplCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL", description = "HF model directory.")
    Path model;

    @Option(names = "--text", required = true, paramLabel = "FILE", description = "UTF-8 text to evaluate: a file, a .jsonl file (field \"text\") or a directory of them (as lopper eval --text).")
    Path text;

    @Option(names = "--seq-len", defaultValue = "256", description = "Window length in tokens. Default: ${DEFAULT-VALUE}.")
    int seqLen;

    @Option(names = "--batch", defaultValue = "8", description = "Windows per forward pass. Default: ${DEFAULT-VALUE}.")
    int batch;

    @Mixin
    ModelOptions options;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        if (batch < 1) {
            throw new IllegalArgumentException("--batch " + batch + ": expected at least 1 window per forward pass");
        }
        if (seqLen < 2) {
            throw new IllegalArgumentException("--seq-len " + seqLen + ": expected at least 2 tokens");
        }
        try (ModelDir md = ModelDir.open(model)) {
            if (seqLen > md.config().maxPositionEmbeddings()) {
                spec.commandLine().getErr().printf("warning: --seq-len %d is longer than the model's context length (max_position_embeddings %d "
                        + "in %s); positions past it were never trained, so the perplexity will mislead%n", seqLen,
                        md.config().maxPositionEmbeddings(), model.resolve("config.json"));
                spec.commandLine().getErr().flush();
            }
            long[] ids = Perplexity.tokenize(md.tokenizer(), text);
            try (LlamaModel lm = md.loadModel(options.device())) {
                PerplexityResult r = Perplexity.evaluate(lm, ids, seqLen, batch, model.toString(), text.toString());
                PrintWriter out = spec.commandLine().getOut();
                if (options.json) {
                    Output.json(out, r);
                } else {
                    out.printf(Locale.ROOT, "text: %s (%d tokens), %d windows of %d, %d predicted tokens%n", text, r.textTokens(),
                            r.windows(), seqLen, r.predictedTokens());
                    out.printf(Locale.ROOT, "time: %.1f s, %.0f tokens/s on %s%n", r.seconds(), r.tokensPerSecond(), r.device());
                    out.printf(Locale.ROOT, "mean NLL: %.5f nats%n", r.meanNll());
                    out.printf(Locale.ROOT, "perplexity: %.4f%n", r.perplexity());
                    out.flush();
                }
            }
        }
        return 0;
    }
}
