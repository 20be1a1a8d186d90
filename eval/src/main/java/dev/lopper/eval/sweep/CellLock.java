package dev.lopper.eval.sweep;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * The claim of one sweep cell, safe across hosts on a shared (NFS) filesystem: the lock is the file
 * {@code OUT/<cell>.lock}, made with an atomic exclusive create ({@code O_CREAT|O_EXCL}, atomic on NFSv3 and later),
 * never an OS file lock. It names its holder (host, pid, Slurm job, start time, a random token), and the holder
 * touches it every {@link #HEARTBEAT} while it works. A lock is stale, and taken over, when its holder ran on this
 * host and that process is gone, or when it has not been touched for {@link #STALE} (a holder on another host that
 * died). Taking over is itself claimed with an exclusive create of {@code <cell>.lock.break}, so two runs that both
 * found the same stale lock cannot both take it.
 *
 * <pre>{@code
 * try (CellLock lock = CellLock.acquire(out, "flap-0.20")) {
 *     ... prune and evaluate the cell ...
 * }
 * }</pre>
 */
public final class CellLock implements AutoCloseable {
    /** How often the holder touches its lock. */
    public static final Duration HEARTBEAT = Duration.ofSeconds(30);
    /** A lock untouched this long is stale: its holder died on a host this process cannot see. */
    public static final Duration STALE = Duration.ofMinutes(5);

    private final Path file;
    private final String token;
    private final ScheduledExecutorService beat;

    private final Thread onExit;

    private CellLock(Path file, String token) {
        this.file = file;
        this.token = token;
        // a run stopped by a signal (scancel, a time limit) lets go of the cell on its way out; SIGKILL leaves the
        // file, which the next run finds stale
        this.onExit = new Thread(this::release, "lopper-cell-lock-release");
        Runtime.getRuntime().addShutdownHook(onExit);
        this.beat = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "lopper-cell-lock");
            t.setDaemon(true);
            return t;
        });
        beat.scheduleAtFixedRate(() -> {
            try {
                Files.setLastModifiedTime(file, FileTime.from(Instant.now()));
            } catch (IOException e) {
                // the next beat tries again; a lock lost on the filesystem shows in --status
            }
        }, HEARTBEAT.toMillis(), HEARTBEAT.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** The lock file of a cell. */
    public static Path file(Path out, String cell) {
        return out.resolve(cell + ".lock");
    }

    /**
     * Claims a cell.
     *
     * @throws IllegalStateException when a live run holds it (the message names the holder)
     */
    public static CellLock acquire(Path out, String cell) throws IOException {
        Path file = file(out, cell);
        String token = UUID.randomUUID().toString();
        for (int attempt = 0; attempt < 3; attempt++) {
            if (create(file, token)) {
                return new CellLock(file, token);
            }
            Holder h = Holder.read(file);
            if (h == null) {
                continue; // released meanwhile
            }
            if (!h.stale()) {
                throw new IllegalStateException("cell " + cell + ": another run is writing it (" + file + ": " + h.describe()
                        + "); wait for it, or remove the file if that run is gone");
            }
            breakStale(file, h);
        }
        throw new IllegalStateException("cell " + cell + ": " + file + " keeps reappearing; another run is claiming the cell");
    }

    /** The holder of a cell's lock, or null when it is not locked. */
    public static Holder holder(Path out, String cell) {
        return Holder.read(file(out, cell));
    }

    private static boolean create(Path file, String token) throws IOException {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("host", host());
        m.put("pid", Long.toString(ProcessHandle.current().pid()));
        String job = System.getenv("SLURM_ARRAY_JOB_ID") != null
                ? System.getenv("SLURM_ARRAY_JOB_ID") + "_" + System.getenv("SLURM_ARRAY_TASK_ID") : System.getenv("SLURM_JOB_ID");
        m.put("slurm_job", job == null ? "-" : job);
        m.put("since", Instant.now().toString());
        m.put("token", token);
        StringBuilder s = new StringBuilder();
        m.forEach((k, v) -> s.append(k).append(' ').append(v).append('\n'));
        try {
            // the create is the claim; the content follows in the same call (a reader of an empty file waits a beat)
            Files.writeString(file, s, StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.CREATE_NEW,
                    java.nio.file.StandardOpenOption.WRITE);
            return true;
        } catch (FileAlreadyExistsException e) {
            return false;
        }
    }

    private static void breakStale(Path file, Holder seen) throws IOException {
        Path claim = file.resolveSibling(file.getFileName() + ".break");
        try {
            Files.createFile(claim);
        } catch (FileAlreadyExistsException e) {
            // another run is taking it over; a claim left by a run that died while breaking is removed when stale
            try {
                if (Duration.between(Files.getLastModifiedTime(claim).toInstant(), Instant.now()).compareTo(STALE) > 0) {
                    Files.deleteIfExists(claim);
                }
            } catch (NoSuchFileException gone) {
                // released meanwhile
            }
            return;
        }
        try {
            Holder now = Holder.read(file);
            if (now != null && now.token().equals(seen.token())) {
                Files.deleteIfExists(file);
            }
        } finally {
            Files.deleteIfExists(claim);
        }
    }

    static String host() {
        try {
            return InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            String h = System.getenv("HOSTNAME");
            return h != null ? h : "unknown";
        }
    }

    /** Releases the cell (removes the lock file if it is still this run's). */
    @Override
    public void close() throws IOException {
        try {
            Runtime.getRuntime().removeShutdownHook(onExit);
        } catch (IllegalStateException e) {
            // already shutting down: the hook releases it
        }
        release();
    }

    private void release() {
        beat.shutdownNow();
        try {
            Holder h = Holder.read(file);
            if (h != null && h.token().equals(token)) {
                Files.deleteIfExists(file);
            }
        } catch (IOException | RuntimeException e) {
            // the next run finds it stale
        }
    }

    /** Who holds a lock, as its file says, and when it was last touched. */
    public record Holder(String host, long pid, String slurmJob, String since, String token, Instant touched) {
        static Holder read(Path file) {
            for (int attempt = 0; attempt < 20; attempt++) {
                try {
                    FileTime t = Files.getLastModifiedTime(file);
                    Map<String, String> m = new LinkedHashMap<>();
                    for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
                        int sp = line.indexOf(' ');
                        if (sp > 0) {
                            m.put(line.substring(0, sp), line.substring(sp + 1));
                        }
                    }
                    if (m.containsKey("token")) {
                        long pid;
                        try {
                            pid = Long.parseLong(m.getOrDefault("pid", "-1"));
                        } catch (NumberFormatException e) {
                            pid = -1;
                        }
                        return new Holder(m.getOrDefault("host", "?"), pid, m.getOrDefault("slurm_job", "-"),
                                m.getOrDefault("since", "?"), m.get("token"), t.toInstant());
                    }
                    // created, content not written yet (or a file without a token: treated as written by a dead run)
                    if (Duration.between(t.toInstant(), Instant.now()).compareTo(STALE) > 0) {
                        return new Holder("?", -1, "-", "?", "", t.toInstant());
                    }
                    Thread.sleep(50);
                } catch (NoSuchFileException e) {
                    return null;
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return null;
                }
            }
            return new Holder("?", -1, "-", "?", "", Instant.now());
        }

        /** The holder is gone: a dead process on this host, or no heartbeat for {@link #STALE}. */
        public boolean stale() {
            if (host.equals(CellLock.host()) && pid > 0) { // this host: ask the OS
                return ProcessHandle.of(pid).map(p -> !p.isAlive()).orElse(true);
            }
            return Duration.between(touched, Instant.now()).compareTo(STALE) > 0;
        }

        String describe() {
            return "host " + host + ", pid " + pid + (slurmJob.equals("-") ? "" : ", Slurm job " + slurmJob) + ", since " + since;
        }
    }
}
