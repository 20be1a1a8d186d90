package dev.lopper.model.testing;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Paths of the fixtures shipped in the repository ({@code fixtures/}): the trained models lopper-tiny (KJV Bible)
 * and lopper-pydoc (Python documentation, another shape) and their text splits. Tests in every module find them
 * through here.
 *
 * <pre>{@code
 * Path model = Fixtures.model("lopper-pydoc");
 * Path test = Fixtures.text("lopper-pydoc", "test");   // fixtures/text/pydoc-test.txt
 * }</pre>
 */
public final class Fixtures {
    private Fixtures() {
    }

    /** The repository root: system property {@code lopper.repo.root} (set by the build), else the nearest parent with fixtures/. */
    public static Path root() {
        String prop = System.getProperty("lopper.repo.root");
        Path p = prop != null ? Path.of(prop) : Path.of("").toAbsolutePath();
        while (p != null && !Files.isDirectory(p.resolve("fixtures"))) {
            p = p.getParent();
        }
        if (p == null) {
            throw new IllegalStateException("no fixtures/ directory above " + Path.of("").toAbsolutePath());
        }
        return p;
    }

    /** The shipped fixture models. */
    public static final String TINY = "lopper-tiny";
    public static final String PYDOC = "lopper-pydoc";

    /** fixtures/lopper-tiny (fails if the shipped model is missing: run scripts/train-fixture). */
    public static Path tinyModel() {
        return model(TINY);
    }

    /** fixtures/NAME, one of {@link #TINY} and {@link #PYDOC} (fails if its weights are missing). */
    public static Path model(String name) {
        Path p = root().resolve("fixtures").resolve(name);
        if (!Files.exists(p.resolve("model.safetensors"))) {
            throw new IllegalStateException(p + " has no model.safetensors: run scripts/train-fixture"
                    + (name.equals(PYDOC) ? " --corpus pydoc" : ""));
        }
        return p;
    }

    /** fixtures/text/kjv-{train,valid,test}.txt, lopper-tiny's splits */
    public static Path text(String split) {
        return text(TINY, split);
    }

    /** The text split ({@code train}, {@code valid}, {@code test}) a fixture model was trained and tested on. */
    public static Path text(String model, String split) {
        return root().resolve("fixtures/text/" + (model.equals(PYDOC) ? "pydoc" : "kjv") + "-" + split + ".txt");
    }
}
