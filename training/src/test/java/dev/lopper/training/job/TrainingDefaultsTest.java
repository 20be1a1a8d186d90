package dev.lopper.training.job;

import dev.lopper.training.loop.TrainOptions;
import dev.lopper.training.lora.LoraConfig;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** docs/CRITERIA.md's table of the training methods' defaults says what the registry and the recovery defaults run. */
class TrainingDefaultsTest {
    @Test
    void theDocsTableMatchesTheCode() throws Exception {
        List<String> rows = Files.readAllLines(Path.of("../docs/CRITERIA.md")).stream().filter(l -> l.startsWith("| ")).toList();
        Set<String> seen = new TreeSet<>();
        for (String row : rows) {
            String[] c = row.split("\\|");
            String name = c[1].trim();
            boolean recover = name.equals("recover");
            if (!recover && !ScheduleMethods.isMethod(name) || c.length < 8) {
                continue; // another table of the page
            }
            TrainOptions o = recover ? TrainOptions.defaults(100) : ScheduleMethods.trainDefaults(name, 100, 0);
            assertEquals(Double.parseDouble(c[2].trim()), o.learningRate(), 0, name + ": lr");
            assertEquals(o.microBatch() + " x " + o.accumulation(), c[3].trim(), name + ": micro-batch x accumulation");
            assertEquals(Integer.toString(o.seqLen()), c[4].trim(), name + ": train seq-len");
            ScheduleMethods.Entry e = ScheduleMethods.get(name);
            String lora = c[5].trim();
            if (recover || e.lora() != null) {
                LoraConfig l = recover ? LoraConfig.defaults() : e.lora();
                assertEquals(l.rank() + " / " + fmt(l.alpha()) + " / " + fmt(l.dropout()), lora, name + ": LoRA");
            } else {
                assertEquals("-", lora, name + ": trains no adapters");
            }
            seen.add(name);
        }
        Set<String> all = new TreeSet<>(ScheduleMethods.names());
        all.add("recover");
        assertEquals(all, seen, "every training method has its row");
    }

    private static String fmt(double v) {
        return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
    }
}
