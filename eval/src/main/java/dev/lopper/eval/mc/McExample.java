package dev.lopper.eval.mc;

import java.util.List;

/**
 * One multiple-choice question as lm-evaluation-harness scores it: the log-likelihood of each choice's
 * continuation given its context. Most tasks share one context ({@code contexts} of size 1); WinoGrande's partial
 * scoring has one context per choice and one shared continuation.
 *
 * <pre>{@code
 * McExample e = McExample.of("The sky is", List.of("blue", "green"), 0);
 * }</pre>
 *
 * @param contexts one context, or one per choice
 * @param choices what is scored after the context (joined with the target delimiter " ")
 * @param label index of the right choice
 */
public record McExample(List<String> contexts, List<String> choices, int label) {
    public McExample {
        contexts = List.copyOf(contexts);
        choices = List.copyOf(choices);
        if (choices.size() < 2) {
            throw new IllegalArgumentException("expected at least 2 choices, found " + choices.size());
        }
        for (int i = 0; i < choices.size(); i++) {
            if (choices.get(i) == null || choices.get(i).isBlank()) {
                // an empty continuation has log-likelihood 0 and wins every time: an accuracy that means nothing
                throw new IllegalArgumentException("choice " + i + " is empty; expected text to score");
            }
        }
        if (contexts.size() != 1 && contexts.size() != choices.size()) {
            throw new IllegalArgumentException("expected 1 context or one per choice, found " + contexts.size());
        }
        if (label < 0 || label >= choices.size()) {
            throw new IllegalArgumentException("label " + label + " is not a choice index (0.." + (choices.size() - 1) + ")");
        }
    }

    public static McExample of(String context, List<String> choices, int label) {
        return new McExample(List.of(context), choices, label);
    }

    public String context(int choice) {
        return contexts.size() == 1 ? contexts.get(0) : contexts.get(choice);
    }
}
