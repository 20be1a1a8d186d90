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
            if (Generation.exceedsContext(lm, promptIds.length, maxTokens)) {
                spec.commandLine().getErr().printf("warning: %d prompt + %d new tokens pass the model's context length "
                        + "(max_position_embeddings %d): past it each token re-runs the last %d tokens without a KV cache (much slower)%n",
                        promptIds.length, maxTokens, md.config().maxPositionEmbeddings(), md.config().maxPositionEmbeddings());
                spec.commandLine().getErr().flush();
            }
            PrintWriter out = spec.commandLine().getOut();
            long t0 = System.nanoTime();
            long[] all;
            if (options.json) {
                all = Generation.greedy(lm, promptIds, maxTokens);
            } else {
                // stream: print the prompt, then each token's text as soon as it is chosen (decoding the whole
                // continuation each time, since a byte-level BPE token may complete a character begun before it)
                out.print(prompt);
                out.flush();
                StreamedText text = new StreamedText(tok, out);
                all = Generation.greedy(lm, promptIds, maxTokens, text::add);
                out.println();
                out.flush();
            }
            double secs = (System.nanoTime() - t0) / 1e9;
            long[] generated = Arrays.copyOfRange(all, promptIds.length, all.length);
            String completion = tok.decode(generated);
            if (options.json) {
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("prompt", prompt);
                r.put("completion", completion);
                r.put("prompt_ids", promptIds);
                r.put("generated_ids", generated);
                r.put("seconds", secs);
                Output.json(out, r);
            }
        }
        return 0;
    }

    /** Prints the new text of a growing token sequence. */
    private static final class StreamedText {
        private final Tokenizer tokenizer;
        private final PrintWriter out;
        private final java.util.List<Long> ids = new java.util.ArrayList<>();
        private String printed = "";

        StreamedText(Tokenizer tokenizer, PrintWriter out) {
            this.tokenizer = tokenizer;
            this.out = out;
        }

        void add(long id) {
            ids.add(id);
            String text = tokenizer.decode(ids.stream().mapToLong(Long::longValue).toArray());
            // hold back a trailing replacement character: the next token may complete that character
            int end = text.endsWith("\uFFFD") ? text.length() - 1 : text.length();
            if (end > printed.length() && text.startsWith(printed)) {
                out.print(text.substring(printed.length(), end));
                out.flush();
                printed = text.substring(0, end);
            }
        }
    }
}
