package dev.lopper.cli;

import picocli.CommandLine.Option;

import java.nio.file.Path;

/**
 * The training options' old spellings, kept hidden so that existing scripts run: {@code --data} ({@code
 * --train-data}), {@code --val} ({@code --val-data}) and {@code --seq-len} ({@code --train-seq-len}; only in
 * {@code recover}, where {@code --seq-len} means nothing else). {@link #applyTo} puts what was given into the
 * {@link TrainingOptions}.
 */
final class OldTrainingSpellings {
    @Option(names = "--data", hidden = true, paramLabel = "FILE", description = "old spelling of --train-data")
    Path data;

    @Option(names = "--val", hidden = true, paramLabel = "FILE", description = "old spelling of --val-data")
    Path val;

    @Option(names = "--seq-len", hidden = true, description = "old spelling of --train-seq-len")
    Integer seqLen;

    /** The old spellings given, into {@code t} (the new spelling wins where both are given). */
    void applyTo(TrainingOptions t) {
        t.trainData = t.trainData != null ? t.trainData : data;
        t.valData = t.valData != null ? t.valData : val;
        t.seqLen = t.seqLen != null ? t.seqLen : seqLen;
    }
}
