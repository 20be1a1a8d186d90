package dev.lopper.model.testing;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Paths of the fixtures shipped in the repository ({@code fixtures/}): the trained model lopper-tiny and the
 * KJV text splits. Tests in every module find them through here.
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

    /** fixtures/lopper-tiny (fails if the shipped model is missing: run scripts/train-fixture). */
    public static Path tinyModel() {
        Path p = root().resolve("fixtures/lopper-tiny");
        if (!Files.exists(p.resolve("model.safetensors"))) {
            throw new IllegalStateException(p + " has no model.safetensors: run scripts/train-fixture");
        }
        return p;
    }

    /** fixtures/text/kjv-{train,valid,test}.txt */
    public static Path text(String split) {
        return root().resolve("fixtures/text/kjv-" + split + ".txt");
    }
}
