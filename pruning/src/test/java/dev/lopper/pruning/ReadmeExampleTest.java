package dev.lopper.pruning;

import dev.lopper.model.testing.Fixtures;
import dev.lopper.model.util.Progress;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** The README's "Prune from code" example compiles and runs: this file holds a copy, and the README must hold the same text. */
class ReadmeExampleTest {
    @TempDir
    Path tmp;

    @Test
    void readmeExampleRuns() throws Exception {
        Path root = Fixtures.root();
        // README-BEGIN
        PruneResult result = new Pruner().run(PruneRequest.builder(root.resolve("fixtures/lopper-tiny"))
                .criterion("flap")                                   // FLAP as its paper runs it (WIFV, AL-AM, bias compensation)
                .ratio(0.2)                                          // remove 20% of the prunable parameters
                .calibration(root.resolve("fixtures/text/kjv-train.txt"))
                .samples(64)                                         // fewer windows than the paper's 1024, for a quick try
                .out(tmp.resolve("work/pruned")).overwrite(true)
                .progress(Progress.lines(System.err::println))
                .build());
        System.out.printf("achieved ratio %.3f in %.1f s%n", result.stats().achievedRatio(), result.stats().seconds());
        // README-END
        assertTrue(result.stats().achievedRatio() > 0.1 && result.stats().achievedRatio() < 0.3);
        assertTrue(Files.exists(tmp.resolve("work/pruned/config.json")));

        String test = Files.readString(root.resolve("pruning/src/test/java/dev/lopper/pruning/ReadmeExampleTest.java"));
        String snippet = test.substring(test.indexOf("// README-BEGIN\n") + 16, test.indexOf("        // README-END"));
        String asInReadme = snippet.replace("root.resolve(", "Path.of(").replace("tmp.resolve(", "Path.of(")
                .replaceAll("(?m)^        ", "");
        String readme = Files.readString(root.resolve("README.md"));
        assertTrue(readme.contains(asInReadme), "README.md's Java API example must be:\n" + asInReadme);
    }
}
