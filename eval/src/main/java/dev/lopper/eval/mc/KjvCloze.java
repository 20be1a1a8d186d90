package dev.lopper.eval.mc;

import dev.lopper.model.ModelFormatException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The fixture's built-in task {@code kjv-cloze}: from the held-out split (fixtures/text/kjv-test.txt, one verse a
 * line, chapter headings skipped), the first half of a verse's words as context and 4 endings of {@value #ENDING_WORDS}
 * words: its own next words and the words at the same place (the middle) of 3 other verses, in a seeded random
 * order. Chance is 25%. (Whole second halves as endings were tried first: lopper-tiny scored 27% acc, 37% acc_norm on
 * 60 questions, barely above chance, so the endings are short: 57% / 67% with 2 words, see docs/EVAL.md.)
 *
 * <pre>{@code
 * List<McExample> task = KjvCloze.generate(Path.of("fixtures/text/kjv-test.txt"), 200, 1234);
 * }</pre>
 */
public final class KjvCloze {
    public static final String NAME = "kjv-cloze";
    public static final int CHOICES = 4;
    /** Verses shorter than this (in words) are not used: chapter headings and very short verses. */
    public static final int MIN_WORDS = 10;
    /** Words of each ending: the true next words after the context, or the same span of another verse. */
    public static final int ENDING_WORDS = 2;

    private KjvCloze() {
    }

    public static List<McExample> generate(Path text, int count, long seed) {
        return generate(text, count, seed, ENDING_WORDS);
    }

    /** @param endingWords words of each ending (0: the whole rest of the verse) */
    public static List<McExample> generate(Path text, int count, long seed, int endingWords) {
        List<String[]> verses = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(text, StandardCharsets.UTF_8)) {
                String[] words = line.strip().split("\\s+");
                if (words.length >= MIN_WORDS) {
                    verses.add(words);
                }
            }
        } catch (IOException e) {
            throw ModelFormatException.file(text, "cannot read: " + e.getMessage());
        }
        if (verses.size() < CHOICES) {
            throw ModelFormatException.file(text, "has " + verses.size() + " lines of at least " + MIN_WORDS + " words; kjv-cloze needs " + CHOICES);
        }
        SplittableRandom rnd = new SplittableRandom(seed);
        List<Integer> order = new ArrayList<>();
        for (int i = 0; i < verses.size(); i++) {
            order.add(i);
        }
        Collections.shuffle(order, new java.util.Random(seed));
        List<McExample> out = new ArrayList<>();
        for (int k = 0; k < Math.min(count, verses.size()); k++) {
            int v = order.get(k);
            List<String> endings = new ArrayList<>();
            endings.add(ending(verses.get(v), endingWords));
            while (endings.size() < CHOICES) {
                int o = rnd.nextInt(verses.size());
                String e = ending(verses.get(o), endingWords);
                if (o != v && !endings.contains(e)) {
                    endings.add(e);
                }
            }
            String truth = endings.get(0);
            Collections.shuffle(endings, new java.util.Random(rnd.nextLong()));
            out.add(McExample.of(start(verses.get(v)), endings, endings.indexOf(truth)));
        }
        return out;
    }

    private static String start(String[] words) {
        return String.join(" ", java.util.Arrays.copyOfRange(words, 0, words.length / 2));
    }

    private static String ending(String[] words, int n) {
        int from = words.length / 2;
        return String.join(" ", java.util.Arrays.copyOfRange(words, from, n <= 0 ? words.length : Math.min(words.length, from + n)));
    }
}
