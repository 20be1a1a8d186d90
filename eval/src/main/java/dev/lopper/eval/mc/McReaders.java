package dev.lopper.eval.mc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelFormatException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Reads multiple-choice JSONL files into {@link McExample}s, building context and choices as the task's
 * lm-evaluation-harness YAML does. Formats: {@code generic} ({@code {"context", "choices", "label"}}, docs/EVAL.md)
 * and the released files of {@code arc-easy}/{@code arc-challenge} and {@code openbookqa} ({@code question.stem},
 * {@code question.choices[].text/label}, {@code answerKey}; or HF's flattened {@code question}/{@code question_stem},
 * {@code choices.text/label}), {@code piqa} ({@code goal}, {@code sol1}, {@code sol2}; {@code label} or the
 * released {@code *-labels.lst} beside the file), {@code hellaswag} ({@code activity_label}, {@code ctx_a},
 * {@code ctx_b}, {@code endings}, {@code label}), {@code winogrande} ({@code sentence} with "_", {@code option1},
 * {@code option2}, {@code answer} "1"/"2"; partial scoring) and {@code boolq} ({@code passage}, {@code question},
 * {@code answer} true/false or {@code label}).
 *
 * <pre>{@code
 * List<McExample> arc = McReaders.read("arc-easy", Path.of("ARC-Easy-Test.jsonl"), 0);
 * }</pre>
 */
public final class McReaders {
    public static final List<String> FORMATS = List.of("generic", "arc-easy", "arc-challenge", "piqa", "hellaswag", "winogrande",
            "boolq", "openbookqa");
    private static final ObjectMapper JSON = new ObjectMapper();

    private McReaders() {
    }

    /** @param limit the first {@code limit} examples, 0 for all */
    public static List<McExample> read(String format, Path file, int limit) {
        String f = format.toLowerCase(Locale.ROOT);
        if (!FORMATS.contains(f)) {
            throw new IllegalArgumentException("task format " + format + ": unknown; expected one of " + String.join(", ", FORMATS));
        }
        List<String> lines;
        try {
            lines = Files.readAllLines(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw ModelFormatException.file(file, "cannot read: " + e.getMessage());
        }
        List<String> labels = f.equals("piqa") ? piqaLabels(file) : null;
        List<McExample> out = new ArrayList<>();
        int n = 0;
        for (String line : lines) {
            n++;
            if (line.isBlank()) {
                continue;
            }
            JsonNode d;
            try {
                d = JSON.readTree(line);
            } catch (IOException e) {
                throw ModelFormatException.file(file, "line " + n + " is not valid JSON");
            }
            try {
                out.add(switch (f) {
                    case "generic" -> generic(d);
                    case "arc-easy", "arc-challenge" -> lettered(d, "Question: ", "\nAnswer:");
                    case "openbookqa" -> lettered(d, "", "");
                    case "piqa" -> piqa(d, labels == null ? null : labels.get(out.size()));
                    case "hellaswag" -> hellaswag(d);
                    case "winogrande" -> winogrande(d);
                    default -> boolq(d);
                });
            } catch (IllegalArgumentException | IndexOutOfBoundsException e) {
                throw ModelFormatException.file(file, "line " + n + " (" + f + "): " + e.getMessage());
            }
            if (limit > 0 && out.size() >= limit) {
                break;
            }
        }
        if (out.isEmpty()) {
            throw ModelFormatException.file(file, "holds no examples");
        }
        return out;
    }

    private static String text(JsonNode d, String field) {
        JsonNode v = d.get(field);
        if (v == null || !v.isTextual()) {
            throw new IllegalArgumentException("no string field '" + field + "'");
        }
        return v.textValue();
    }

    private static McExample generic(JsonNode d) {
        JsonNode choices = d.get("choices");
        if (choices == null || !choices.isArray()) {
            throw new IllegalArgumentException("no array field 'choices'");
        }
        List<String> c = new ArrayList<>();
        choices.forEach(x -> c.add(x.asText()));
        JsonNode label = d.get("label");
        if (label == null || !label.canConvertToInt()) {
            throw new IllegalArgumentException("no integer field 'label'");
        }
        return McExample.of(text(d, "context"), c, label.intValue());
    }

    /** ARC / OpenBookQA: lettered choices, answerKey a letter or a digit. */
    private static McExample lettered(JsonNode d, String prefix, String suffix) {
        JsonNode q = d.get("question");
        String stem;
        JsonNode choices;
        if (q != null && q.isObject()) {
            stem = text(q, "stem");
            choices = q.get("choices");
        } else {
            stem = d.has("question_stem") ? text(d, "question_stem") : text(d, "question");
            choices = d.get("choices");
        }
        if (choices == null) {
            throw new IllegalArgumentException("no field 'choices'");
        }
        List<String> texts = new ArrayList<>();
        List<String> letters = new ArrayList<>();
        if (choices.isArray()) {
            choices.forEach(c -> {
                texts.add(text(c, "text"));
                letters.add(text(c, "label"));
            });
        } else {
            choices.get("text").forEach(t -> texts.add(t.asText()));
            choices.get("label").forEach(t -> letters.add(t.asText()));
        }
        String key = text(d, "answerKey").strip();
        int label = letters.indexOf(key);
        if (label < 0) {
            throw new IllegalArgumentException("answerKey '" + key + "' is not among the choice labels " + letters);
        }
        return McExample.of(prefix + stem + suffix, texts, label);
    }

    private static List<String> piqaLabels(Path file) {
        Path lst = file.resolveSibling(file.getFileName().toString().replaceFirst("\\.jsonl?$", "") + "-labels.lst");
        if (!Files.exists(lst)) {
            return null;
        }
        try {
            return Files.readAllLines(lst, StandardCharsets.UTF_8).stream().filter(s -> !s.isBlank()).map(String::strip).toList();
        } catch (IOException e) {
            throw ModelFormatException.file(lst, "cannot read: " + e.getMessage());
        }
    }

    private static McExample piqa(JsonNode d, String fileLabel) {
        JsonNode label = d.get("label");
        int l;
        if (label != null && label.canConvertToInt()) {
            l = label.intValue();
        } else if (label != null && label.isTextual()) {
            l = Integer.parseInt(label.textValue().strip());
        } else if (fileLabel != null) {
            l = Integer.parseInt(fileLabel);
        } else {
            throw new IllegalArgumentException("no field 'label' and no *-labels.lst beside the file");
        }
        return McExample.of("Question: " + text(d, "goal") + "\nAnswer:", List.of(text(d, "sol1"), text(d, "sol2")), l);
    }

    /** lm-eval's hellaswag preprocess: strip, " [title]" -> ". ", drop [bracketed], collapse double spaces. */
    static String hellaswagClean(String s) {
        s = s.strip().replace(" [title]", ". ");
        s = s.replaceAll("\\[.*?\\]", "");
        return s.replace("  ", " ");
    }

    private static McExample hellaswag(JsonNode d) {
        String ctxB = text(d, "ctx_b");
        String ctx = text(d, "ctx_a") + " " + (ctxB.isEmpty() ? "" : Character.toUpperCase(ctxB.charAt(0)) + ctxB.substring(1).toLowerCase(Locale.ROOT));
        List<String> endings = new ArrayList<>();
        d.get("endings").forEach(e -> endings.add(hellaswagClean(e.asText())));
        JsonNode label = d.get("label");
        if (label == null) {
            throw new IllegalArgumentException("no field 'label'");
        }
        int l = label.isTextual() ? Integer.parseInt(label.textValue()) : label.intValue();
        return McExample.of(hellaswagClean(text(d, "activity_label") + ": " + ctx), endings, l);
    }

    private static McExample winogrande(JsonNode d) {
        String sentence = text(d, "sentence");
        int idx = sentence.indexOf('_');
        if (idx < 0) {
            throw new IllegalArgumentException("'sentence' has no '_' blank");
        }
        String target = sentence.substring(idx + 1).strip();
        List<String> contexts = List.of(sentence.substring(0, idx) + text(d, "option1"), sentence.substring(0, idx) + text(d, "option2"));
        String answer = text(d, "answer").strip();
        if (!answer.equals("1") && !answer.equals("2")) {
            throw new IllegalArgumentException("'answer' is '" + answer + "', expected \"1\" or \"2\"");
        }
        return new McExample(contexts, List.of(target, target), Integer.parseInt(answer) - 1);
    }

    private static McExample boolq(JsonNode d) {
        JsonNode a = d.has("answer") ? d.get("answer") : d.get("label");
        if (a == null) {
            throw new IllegalArgumentException("no field 'answer' (true/false) or 'label' (0/1)");
        }
        int l = a.isBoolean() ? (a.booleanValue() ? 1 : 0) : a.intValue();
        String q = text(d, "question");
        return McExample.of(text(d, "passage") + "\nQuestion: " + q + "?\nAnswer:", List.of("no", "yes"), l);
    }
}
