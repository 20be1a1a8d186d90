package dev.lopper.model.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * An exclusive claim on an output path for the length of a job, so that two runs writing the same {@code --out}
 * do not silently overwrite each other: the second gets a clear error at its start, not a lost result at its end.
 * The lock is an OS file lock on {@code .NAME.lock} beside the output (released by the OS if the process dies).
 *
 * <pre>{@code
 * try (OutputLock lock = OutputLock.acquire(out, "--out")) {
 *     ... calibrate, prune, write out ...
 * }
 * }</pre>
 */
public final class OutputLock implements AutoCloseable {
    private final Path file;
    private final FileChannel channel;
    private final FileLock lock;

    private OutputLock(Path file, FileChannel channel, FileLock lock) {
        this.file = file;
        this.channel = channel;
        this.lock = lock;
    }

    /**
     * Claims {@code out} (a file or directory that need not exist yet).
     *
     * @throws IllegalArgumentException when another run (this process or another) holds it
     */
    public static OutputLock acquire(Path out, String option) throws IOException {
        Path abs = out.toAbsolutePath().normalize();
        Files.createDirectories(abs.getParent());
        Path file = abs.resolveSibling("." + abs.getFileName() + ".lock");
        FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        FileLock lock;
        try {
            lock = ch.tryLock();
        } catch (OverlappingFileLockException e) {
            lock = null; // held by another job in this JVM
        }
        if (lock == null) {
            ch.close();
            throw new IllegalArgumentException(option + " " + out + ": another Lopper run is writing it (" + file
                    + " is locked); wait for it to finish or choose another path");
        }
        ch.truncate(0);
        ch.write(ByteBuffer.wrap(("pid " + ProcessHandle.current().pid() + "\n").getBytes(StandardCharsets.US_ASCII)));
        return new OutputLock(file, ch, lock);
    }

    /** Releases the claim and removes the lock file. */
    @Override
    public void close() throws IOException {
        try {
            // delete while still holding the lock, so no other run can hold a lock on a file about to vanish
            Files.deleteIfExists(file);
            lock.release();
        } finally {
            channel.close();
        }
    }
}
