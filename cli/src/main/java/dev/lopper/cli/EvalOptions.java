package dev.lopper.cli;

import dev.lopper.eval.EvalRequest;
import dev.lopper.eval.PerplexityPreset;
import dev.lopper.model.util.Progress;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** What {@code eval} and {@code sweep} measure: perplexity text and preset, tasks, speed. */
final class EvalOptions {
    @Option(names = "--text", paramLabel = "SOURCE", description = "Perplexity text: a UTF-8 file, a .jsonl file or a directory of them.")
    Path text;

    @Option(names = "--text-field", defaultValue = "text", description = "JSONL field holding the text. Default: ${DEFAULT-VALUE}.")
    String textField;

    @Option(names = "--ppl-preset", defaultValue = "llm-pruner", paramLabel = "NAME",
            description = "llm-pruner (windows of 128, tail dropped), wanda or flap (windows of the model's context length). Default: ${DEFAULT-VALUE}.")
    String preset;

    @Option(names = "--seq-len", paramLabel = "N", description = "Perplexity window length in tokens (overrides the preset's; lopper ppl's --seq-len).")
    Integer window;

    @Option(names = "--window", hidden = true, paramLabel = "N", description = "old spelling of --seq-len")
    void oldWindow(int n) {
        window = n;
    }

    @Option(names = "--stride", paramLabel = "N", description = "Tokens between window starts; less than --seq-len: HF's strided sliding window.")
    Integer stride;

    @Option(names = "--batch", defaultValue = "8", description = "Windows per forward pass. Default: ${DEFAULT-VALUE}.")
    int batch;

    @Option(names = "--task", paramLabel = "SPEC",
            description = "Multiple-choice task, repeatable: kjv-cloze[=FILE], or FORMAT=FILE.jsonl with FORMAT generic, arc-easy, "
                    + "arc-challenge, piqa, hellaswag, winogrande, boolq or openbookqa (NAME:FORMAT=FILE to name it).")
    List<String> tasks = new ArrayList<>();

    @Option(names = "--limit", defaultValue = "0", description = "Examples per task (0: all; kjv-cloze: 200).")
    int limit;

    @Option(names = "--seed", defaultValue = "1234", description = "Seed (kjv-cloze generation, speed inputs). Default: ${DEFAULT-VALUE} (lm-evaluation-harness's numpy/torch seed).")
    long seed;

    @Option(names = "--no-speed", description = "Skip the prefill/decode timing.")
    boolean noSpeed;

    EvalRequest request(Path model, ai.djl.Device device, Progress progress) {
        PerplexityPreset p = PerplexityPreset.parse(preset);
        if (window != null && (window < 0 || window == 1)) {
            throw new IllegalArgumentException("--seq-len " + window + ": expected at least 2 tokens"); // the preset says --window
        }
        if (window != null || stride != null) {
            p = new PerplexityPreset(window != null || stride != null ? "custom" : p.name(), window != null ? window : p.window(),
                    stride != null ? stride : 0, p.joiner());
        }
        EvalRequest.Builder b = EvalRequest.builder(model).device(device).text(text).textField(textField).preset(p).batch(batch)
                .limit(limit).seed(seed).speed(!noSpeed).progress(progress);
        for (String t : tasks) {
            b.task(EvalRequest.Task.parse(t, Path.of("fixtures/text/kjv-test.txt")));
        }
        return b.build();
    }
}
