package dev.lopper.eval;

import ai.djl.Device;
import dev.lopper.model.util.Progress;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * One evaluation for {@link Evaluation}: what to measure on which model.
 *
 * <pre>{@code
 * EvalRequest r = EvalRequest.builder(Path.of("work/pruned-onnx"))
 *         .text(Path.of("fixtures/text/kjv-test.txt")).preset(PerplexityPreset.LLM_PRUNER)
 *         .task(EvalRequest.Task.kjvCloze(Path.of("fixtures/text/kjv-test.txt"))).limit(100).build();
 * }</pre>
 *
 * @param text perplexity text (file, JSONL or directory), or null for none
 * @param tasks multiple-choice tasks
 * @param limit examples per task, 0 for all
 * @param speed whether to time prefill and decoding
 */
public record EvalRequest(Path model, Device device, Path text, String textField, PerplexityPreset preset, int batch,
                          List<Task> tasks, int limit, long seed, boolean speed, int prefillTokens, int decodeTokens,
                          Progress progress) {
    public EvalRequest {
        tasks = List.copyOf(tasks);
        progress = progress == null ? Progress.NONE : progress;
        device = device == null ? Device.cpu() : device;
    }

    /**
     * A multiple-choice task: {@code format} is one of {@link dev.lopper.eval.mc.McReaders#FORMATS} or
     * {@code kjv-cloze} (generated from {@code file}, the held-out KJV split).
     */
    public record Task(String name, String format, Path file) {
        public static Task kjvCloze(Path text) {
            return new Task(dev.lopper.eval.mc.KjvCloze.NAME, dev.lopper.eval.mc.KjvCloze.NAME, text);
        }

        /** "FORMAT=FILE" (name = format), "NAME:FORMAT=FILE", or "kjv-cloze" / "kjv-cloze=FILE". */
        public static Task parse(String spec, Path defaultKjv) {
            String left = spec.contains("=") ? spec.substring(0, spec.indexOf('=')) : spec;
            Path file = spec.contains("=") ? Path.of(spec.substring(spec.indexOf('=') + 1)) : null;
            String name = left.contains(":") ? left.substring(0, left.indexOf(':')) : left;
            String format = left.contains(":") ? left.substring(left.indexOf(':') + 1) : left;
            if (format.equals(dev.lopper.eval.mc.KjvCloze.NAME)) {
                return new Task(name, format, file == null ? defaultKjv : file);
            }
            if (!dev.lopper.eval.mc.McReaders.FORMATS.contains(format)) {
                throw new IllegalArgumentException("--task " + spec + ": unknown format '" + format + "'; expected kjv-cloze or one of "
                        + String.join(", ", dev.lopper.eval.mc.McReaders.FORMATS));
            }
            if (file == null) {
                throw new IllegalArgumentException("--task " + spec + ": expected " + format + "=FILE.jsonl");
            }
            return new Task(name, format, file);
        }
    }

    public static Builder builder(Path model) {
        return new Builder(model);
    }

    /** Fluent construction; defaults: LLM-Pruner's perplexity, batch 8, all examples, seed 1234, speed timed. */
    public static final class Builder {
        private final Path model;
        private Device device;
        private Path text;
        private String textField = "text";
        private PerplexityPreset preset = PerplexityPreset.LLM_PRUNER;
        private int batch = 8;
        private final List<Task> tasks = new ArrayList<>();
        private int limit;
        private long seed = 1234;
        private boolean speed = true;
        private int prefillTokens = 128;
        private int decodeTokens = 32;
        private Progress progress;

        private Builder(Path model) {
            this.model = model;
        }

        public Builder device(Device d) { this.device = d; return this; }
        public Builder text(Path t) { this.text = t; return this; }
        public Builder textField(String f) { this.textField = f; return this; }
        public Builder preset(PerplexityPreset p) { this.preset = p; return this; }
        public Builder batch(int b) { this.batch = b; return this; }
        public Builder task(Task t) { this.tasks.add(t); return this; }
        public Builder tasks(List<Task> t) { this.tasks.addAll(t); return this; }
        public Builder limit(int n) { this.limit = n; return this; }
        public Builder seed(long s) { this.seed = s; return this; }
        public Builder speed(boolean s) { this.speed = s; return this; }
        public Builder prefillTokens(int n) { this.prefillTokens = n; return this; }
        public Builder decodeTokens(int n) { this.decodeTokens = n; return this; }
        public Builder progress(Progress p) { this.progress = p; return this; }

        public EvalRequest build() {
            return new EvalRequest(model, device, text, textField, preset, batch, tasks, limit, seed, speed, prefillTokens,
                    decodeTokens, progress);
        }
    }
}
