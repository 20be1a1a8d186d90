package dev.lopper.training.job;

import dev.lopper.training.loop.Trainer;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A training job stopped on request (Ctrl-C) after writing a checkpoint: the same command continues it. The CLI
 * exits with 130, as a shell does for SIGINT.
 *
 * <pre>{@code
 * try { new PruneSchedule().run(r, stop::watch); } catch (TrainingInterrupted e) { return 130; }
 * }</pre>
 */
public final class TrainingInterrupted extends IOException {
    private final int step;

    public TrainingInterrupted(int step, Path checkpoints) {
        super("interrupted at training step " + step + "; checkpoint saved in " + checkpoints + "; run the same command to continue");
        this.step = step;
    }

    /** Throws when {@code result} is of a run stopped on request (its checkpoint in {@code checkpoints}). */
    static void ifStopped(Trainer.Result result, Path checkpoints) throws TrainingInterrupted {
        if (result.interrupted()) {
            throw new TrainingInterrupted(result.step(), checkpoints);
        }
    }

    /** The step the checkpoint holds. */
    public int step() {
        return step;
    }
}
