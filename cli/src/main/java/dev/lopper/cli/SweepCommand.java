package dev.lopper.cli;

import dev.lopper.eval.sweep.Slurm;
import dev.lopper.eval.sweep.Sweep;
import dev.lopper.eval.sweep.SweepSpec;
import dev.lopper.eval.sweep.SweepStatus;
import dev.lopper.model.LopperVersion;
import dev.lopper.model.io.OutputGuard;
import dev.lopper.pruning.criteria.Criteria;
import dev.lopper.model.io.OutputLock;
import dev.lopper.model.util.Progress;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.Callable;

/**
 * {@code lopper sweep MODEL --methods a,b --ratios x,y --out DIR}: prune -> eval per cell, resumable, on this machine
 * ({@code --executor local}) or as a Slurm array job ({@code --executor slurm}); {@code --status DIR} says where each
 * cell stands. docs/EVAL.md, docs/CLUSTER.md.
 */
@Command(name = "sweep", mixinStandardHelpOptions = true,
        description = {"Prunes MODEL with every method at every ratio and evaluates each cell (and the dense model).",
                "Each cell is a directory with its report. Rerunning with the same --out skips finished cells and redoes half-done ones.",
                "Writes results.md and PNG plots. With --executor slurm every cell is a task of one Slurm array job and a",
                "collection job writes results.md after them; --status DIR says where each cell stands. See docs/EVAL.md",
                "and docs/CLUSTER.md."})
final class SweepCommand implements Callable<Integer> {
    /** Options that say how or where to run, not what each cell computes: not part of the sweep's specification. */
    private static final Set<String> NOT_IN_SPEC = Set.of("--out", "--executor", "--partition", "--cpus-per-task", "--mem", "--time",
            "--gres", "--sbatch-arg", "--max-parallel", "--jar", "--wait", "--json", "--threads", "--debug", "--status", "--collect",
            "--run-cell", "--help", "--version");

    @Parameters(index = "0", arity = "0..1", paramLabel = "MODEL", description = "HF model directory")
    Path model;

    @Option(names = "--methods", split = ",", description = "criteria, e.g. flap,wanda-sp,magnitude,cfsp (required)")
    List<String> methods;

    @Option(names = "--ratios", split = ",", description = "pruning ratios, e.g. 0.1,0.2,0.5 (required)")
    List<Double> ratios;

    @Option(names = "--calib", paramLabel = "SOURCE", description = "calibration text for the methods that need it")
    Path calib;

    @Option(names = "--samples", description = "calibration windows (default: each method's paper default)")
    Integer samples;

    @Option(names = "--out", paramLabel = "DIR", description = "sweep directory: new, empty, or an earlier sweep's to resume (required)")
    Path out;

    @Option(names = "--executor", defaultValue = "local", paramLabel = "NAME",
            description = "local (this machine, one cell after another) or slurm (one Slurm array task per cell, then a "
                    + "collection job; returns once submitted). Default: ${DEFAULT-VALUE}.")
    String executor;

    @Option(names = "--partition", paramLabel = "NAME", description = "slurm: partition of both jobs (sbatch --partition)")
    String partition;

    @Option(names = "--cpus-per-task", paramLabel = "N", description = "slurm: CPUs per cell (sbatch --cpus-per-task; also the cell's --threads unless given)")
    Integer cpusPerTask;

    @Option(names = "--mem", paramLabel = "SIZE", description = "slurm: memory per cell, e.g. 16G (sbatch --mem)")
    String mem;

    @Option(names = "--time", paramLabel = "LIMIT", description = "slurm: time limit of a cell, e.g. 2:00:00 (sbatch --time)")
    String time;

    @Option(names = "--gres", paramLabel = "SPEC", description = "slurm: generic resources per cell, e.g. gpu:1 for GPU cells (with --device gpu)")
    String gres;

    @Option(names = "--sbatch-arg", paramLabel = "ARG", description = "slurm: any other sbatch option, repeatable, e.g. --sbatch-arg=--account=proj")
    List<String> sbatchArgs = new ArrayList<>();

    @Option(names = "--max-parallel", paramLabel = "N", description = "slurm: at most N cells at once (the array's %%N throttle)")
    Integer maxParallel;

    @Option(names = "--jar", paramLabel = "FILE", description = "slurm: the lopper jar the nodes run, on a shared filesystem (default: the jar running this command)")
    Path jar;

    @Option(names = "--wait", description = "slurm: after submitting, follow the cells (a line per change) until the collection job has run")
    boolean waitForJobs;

    @Option(names = "--status", paramLabel = "DIR", description = "Print done / running / pending / failed for every cell of the sweep in DIR, and exit.")
    Path status;

    @Option(names = "--collect", paramLabel = "DIR", hidden = true, description = "the collection job: results.md and plots of the sweep in DIR")
    Path collect;

    @Option(names = "--run-cell", arity = "2", paramLabel = "DIR N", hidden = true, description = "an array task: run cell N of the sweep in DIR")
    List<String> runCell;

    @Mixin
    EvalOptions eval;

    @Mixin
    ModelOptions options;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        int modes = (status != null ? 1 : 0) + (collect != null ? 1 : 0) + (runCell != null ? 1 : 0);
        if (modes > 1) {
            throw new ParameterException(spec.commandLine(), "--status, --collect and --run-cell: give one of them");
        }
        if (status != null) {
            return status(status);
        }
        if (collect != null) {
            return collect(collect);
        }
        if (runCell != null) {
            return runCell(Path.of(runCell.get(0)), runCell.get(1));
        }
        requireOption(model == null, "Missing required parameter: 'MODEL'");
        requireOption(methods == null, "Missing required option: '--methods=<methods>'");
        requireOption(ratios == null, "Missing required option: '--ratios=<ratios>'");
        requireOption(out == null, "Missing required option: '--out=DIR'");
        boolean slurm = switch (executor) {
            case "local" -> false;
            case "slurm" -> true;
            default -> throw usage("--executor " + executor + ": expected local or slurm");
        };
        checkExecutorOptions(slurm);
        validate();

        boolean resume = Files.isRegularFile(out.resolve(OutputGuard.MARKER))
                && Files.readString(out.resolve(OutputGuard.MARKER)).contains("\"sweep\"");
        if (!resume) {
            OutputGuard.checkDirectory(out, false, "--out", model, calib, eval.text);
        } else {
            OutputGuard.checkNotOverlapping(out, "--out", model, calib, eval.text);
        }
        Progress progress = Progress.console(System.err);
        SweepSpec sweep;
        try (OutputLock lock = OutputLock.acquire(out, "--out")) {
            Files.createDirectories(out);
            if (!resume) {
                OutputGuard.writeMarker(out, "sweep");
            }
            sweep = specification();
            if (!slurm) {
                List<Sweep.Cell> cells = new Sweep().run(request(progress));
                printLocal(cells);
                return 0;
            }
            return submit(sweep);
        }
    }

    /** A usage error (exit code 2), as Validation's: the options do not fit together. */
    private ParameterException usage(String message) {
        return new Validation.UsageError(spec.commandLine(), message);
    }

    private void requireOption(boolean missing, String message) {
        if (missing) {
            throw new ParameterException(spec.commandLine(), message);
        }
    }

    private void checkExecutorOptions(boolean slurm) {
        if (!slurm) {
            Map<String, Object> given = new LinkedHashMap<>();
            given.put("--partition", partition);
            given.put("--cpus-per-task", cpusPerTask);
            given.put("--mem", mem);
            given.put("--time", time);
            given.put("--gres", gres);
            given.put("--max-parallel", maxParallel);
            given.put("--jar", jar);
            given.put("--sbatch-arg", sbatchArgs.isEmpty() ? null : sbatchArgs);
            given.put("--wait", waitForJobs ? true : null);
            for (Map.Entry<String, Object> e : given.entrySet()) {
                if (e.getValue() != null) {
                    throw usage(e.getKey() + ": only with --executor slurm; found --executor " + executor);
                }
            }
            return;
        }
        if (cpusPerTask != null && cpusPerTask < 1) {
            throw usage("--cpus-per-task " + cpusPerTask + ": expected at least 1");
        }
        if (maxParallel != null && maxParallel < 1) {
            throw usage("--max-parallel " + maxParallel + ": expected at least 1");
        }
        for (String a : sbatchArgs) {
            if (!a.startsWith("-")) {
                throw usage("--sbatch-arg " + a + ": expected an sbatch option (starting with -), e.g. --sbatch-arg=--account=proj");
            }
        }
        if (jar != null && !Files.isRegularFile(jar)) {
            throw new IllegalArgumentException("--jar " + jar + ": " + (Files.exists(jar) ? "is not a file" : "does not exist")
                    + "; expected the lopper jar (cli/target/lopper.jar)");
        }
    }

    /** What would fail in every cell fails here, before any cell runs or is submitted. */
    private void validate() {
        if (!Files.isRegularFile(model.resolve("config.json"))) {
            throw new IllegalArgumentException("MODEL " + model + ": " + (Files.isDirectory(model) ? "has no config.json" : "is not a directory")
                    + "; expected a Hugging Face model directory");
        }
        for (double r : ratios) {
            if (!(r > 0 && r < 1)) {
                throw new IllegalArgumentException("--ratios " + r + ": expected a ratio between 0 and 1 (exclusive)");
            }
        }
        for (String m : methods) {
            if (!Criteria.names().contains(m)) {
                throw new IllegalArgumentException("--methods " + m + ": expected criteria from " + new java.util.TreeSet<>(Criteria.names()));
            }
            if (calib == null && Criteria.create(m, Map.of()).needsCalibration()) {
                throw new IllegalArgumentException("--methods " + m + ": needs calibration data; give --calib FILE");
            }
        }
        for (Map.Entry<String, Path> e : new java.util.TreeMap<>(Map.of("--calib", Objects.requireNonNullElse(calib, Path.of("")),
                "--text", Objects.requireNonNullElse(eval.text, Path.of("")))).entrySet()) {
            if (!e.getValue().toString().isEmpty() && !Files.exists(e.getValue())) {
                throw new IllegalArgumentException(e.getKey() + " " + e.getValue() + ": does not exist; expected a text file, .jsonl file or a directory of them");
            }
        }
    }

    /** The request every cell runs (local sweep, array task). */
    Sweep.Request request(Progress progress) {
        return new Sweep.Request(model, methods, ratios, calib, samples, eval.seed, out,
                m -> eval.request(m, options.device(), progress), progress);
    }

    /**
     * This command's specification: written as {@code OUT/sweep.json} on the first run; a rerun must match it (the
     * cells and what they compute), only the executor's options may differ.
     */
    private SweepSpec specification() throws java.io.IOException {
        Map<String, List<String>> mine = canonical(spec.commandLine().getParseResult());
        if (SweepSpec.exists(out)) {
            SweepSpec earlier = SweepSpec.read(out);
            Map<String, List<String>> theirs = canonical(parse(earlier.args(), out).spec.commandLine().getParseResult());
            if (!mine.equals(theirs)) {
                Set<String> names = new java.util.TreeSet<>(mine.keySet());
                names.addAll(theirs.keySet());
                String first = names.stream().filter(n -> !Objects.equals(mine.get(n), theirs.get(n))).findFirst().orElse("?");
                throw new IllegalArgumentException("--out " + out + ": holds a sweep with other settings (" + out.resolve(SweepSpec.FILE)
                        + " has " + show(first, theirs.get(first)) + ", this command " + show(first, mine.get(first))
                        + "); rerun it with the same settings or choose a new --out");
            }
            return earlier;
        }
        SweepSpec s = new SweepSpec(SweepSpec.FORMAT, LopperVersion.get(), Instant.now().toString(),
                Path.of("").toAbsolutePath().toString(), flatten(mine), Sweep.points(methods, ratios), List.of());
        s.write(out);
        return s;
    }

    private static String show(String name, List<String> values) {
        if (values == null) {
            return "no " + name;
        }
        return name.equals("MODEL") ? "MODEL " + values.get(0) : values.isEmpty() ? name : name + " " + String.join(" ", values);
    }

    /** The options that define the cells, by name, with their values as given (paths absolute). */
    private static Map<String, List<String>> canonical(ParseResult pr) {
        Map<String, List<String>> m = new LinkedHashMap<>();
        if (pr.hasMatchedPositional(0)) {
            m.put("MODEL", List.of(Path.of(pr.matchedPositional(0).originalStringValues().get(0)).toAbsolutePath().normalize().toString()));
        }
        // matchedOptions() lists an option once per occurrence; originalStringValues() has all of its values
        List<OptionSpec> opts = new ArrayList<>(new java.util.LinkedHashSet<>(pr.matchedOptions()));
        opts.sort(Comparator.comparing(OptionSpec::longestName));
        for (OptionSpec o : opts) {
            if (NOT_IN_SPEC.contains(o.longestName())) {
                continue;
            }
            List<String> values = new ArrayList<>();
            for (String v : o.originalStringValues()) {
                values.add(o.type() == Path.class ? Path.of(v).toAbsolutePath().normalize().toString() : v);
            }
            m.put(o.longestName(), values);
        }
        return m;
    }

    private static List<String> flatten(Map<String, List<String>> m) {
        List<String> args = new ArrayList<>();
        m.forEach((name, values) -> {
            if (name.equals("MODEL")) {
                args.add(values.get(0));
            } else if (values.isEmpty()) {
                args.add(name);
            } else {
                values.forEach(v -> args.add(name + "=" + v));
            }
        });
        return args;
    }

    /** A sweep command rebuilt from a specification's arguments. */
    private static SweepCommand parse(List<String> args, Path out) {
        SweepCommand c = new SweepCommand();
        CommandLine cl = new CommandLine(c);
        List<String> all = new ArrayList<>(args);
        all.add("--out=" + out);
        cl.parseArgs(all.toArray(String[]::new));
        c.spec = cl.getCommandSpec();
        return c;
    }

    private void printLocal(List<Sweep.Cell> cells) throws java.io.IOException {
        if (options.json) {
            Output.json(spec.commandLine().getOut(), cells.stream().map(c -> Map.of("cell", c.name(), "skipped", c.skipped(),
                    "report", out.resolve(c.name()).resolve(Sweep.REPORT).toString())).toList());
        } else {
            spec.commandLine().getOut().print(Files.readString(out.resolve("results.md")));
            spec.commandLine().getOut().printf("%d cells (%d finished earlier), plots: %s%n", cells.size(),
                    cells.stream().filter(Sweep.Cell::skipped).count(), Arrays.asList("ppl-vs-ratio.png", "acc-vs-ratio.png", "speed-vs-params.png"));
            spec.commandLine().getOut().flush();
        }
    }

    // ---- Slurm ----

    private int submit(SweepSpec sweep) throws Exception {
        PrintWriter o = spec.commandLine().getOut();
        Map<Integer, Slurm.TaskState> states = sweep.submissions().isEmpty() ? Map.of() : Slurm.states(sweep);
        List<SweepStatus.Row> rows = SweepStatus.of(out, sweep, states);
        List<Integer> todo = new ArrayList<>();
        for (SweepStatus.Row r : rows) {
            Slurm.TaskState t = states.get(r.index());
            boolean inSlurm = t != null && (t.queued() || t.running());
            if (r.state() != SweepStatus.State.DONE && r.state() != SweepStatus.State.RUNNING && !inSlurm) {
                todo.add(r.index());
            }
        }
        List<String> active = Slurm.activeArrays(sweep, states);
        if (todo.isEmpty() && active.isEmpty()) {
            Sweep.Collected c = Sweep.collect(out, sweep.cells());
            o.print(Files.readString(out.resolve("results.md")));
            o.printf("all %d cells finished earlier; nothing submitted%n", c.done().size());
            o.flush();
            return 0;
        }
        if (todo.isEmpty()) {
            o.printf("nothing to submit: the unfinished cells are queued or running in Slurm job(s) %s; follow them with "
                    + "lopper sweep --status %s%n", String.join(", ", active), out);
            o.flush();
            return waitForJobs ? follow(sweep, null) : 0;
        }
        List<String> cellArgs = new ArrayList<>();
        if (options.threads != null) {
            cellArgs.add("--threads=" + options.threads);
        }
        if (options.json) {
            cellArgs.add("--json");
        }
        Slurm.Options so = new Slurm.Options(partition, cpusPerTask, mem, time, gres, maxParallel, sbatchArgs);
        SweepSpec.Submission s = Slurm.submit(out, sweep, todo, active, so, lopperCommand(), cellArgs);
        SweepSpec sw = sweep.with(s);
        sw.write(out);
        if (options.json) {
            Output.json(o, Map.of("array_job", s.arrayJob(), "collect_job", s.collectJob(), "cells",
                    todo.stream().map(i -> sw.cells().get(i).name()).toList()));
        } else {
            o.printf(Locale.ROOT, "submitted %d of %d cells as Slurm array job %s (%s)%s, and collection job %s after it%s%n", todo.size(),
                    sweep.cells().size(), s.arrayJob(), String.join(", ", todo.stream().map(i -> i + ":" + sw.cells().get(i).name()).toList()),
                    maxParallel != null ? ", at most " + maxParallel + " at once" : "", s.collectJob(),
                    active.isEmpty() ? "" : " and job(s) " + String.join(", ", active));
            o.printf("cell logs: %s/<cell>.log; follow with: lopper sweep --status %s%n", out, out);
        }
        o.flush();
        return waitForJobs ? follow(sw, s.collectJob()) : 0;
    }

    /** The command a node runs: this JVM's java with the lopper jar. */
    private List<String> lopperCommand() {
        Path j = jar;
        if (j == null) {
            try {
                Path self = Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI());
                if (!Files.isRegularFile(self) || !self.toString().endsWith(".jar")) {
                    throw new IllegalArgumentException("--jar: not given, and this command does not run from a jar (it runs from "
                            + self + "); pass --jar cli/target/lopper.jar (on a filesystem the nodes share)");
                }
                j = self;
            } catch (java.net.URISyntaxException e) {
                throw new IllegalArgumentException("--jar: not given, and the jar running this command is unknown; pass --jar FILE");
            }
        }
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        return List.of(java, "-Dai.djl.offline=true", "-jar", j.toAbsolutePath().normalize().toString());
    }

    /** --wait: a line whenever a cell changes state, until the collection job has left the queue. */
    private int follow(SweepSpec sweep, String collectJob) throws Exception {
        PrintWriter o = spec.commandLine().getOut();
        Map<String, String> seen = new HashMap<>();
        long start = System.nanoTime();
        while (true) {
            Map<Integer, Slurm.TaskState> states = Slurm.states(sweep);
            List<SweepStatus.Row> rows = SweepStatus.of(out, sweep, states);
            for (SweepStatus.Row r : rows) {
                String line = r.state().label() + (r.state() == SweepStatus.State.DONE ? "" : " (" + r.detail() + ")");
                if (!line.equals(seen.put(r.cell(), line))) {
                    o.printf(Locale.ROOT, "[%4.0f s] cell %s: %s%n", (System.nanoTime() - start) / 1e9, r.cell(), line);
                    o.flush();
                }
            }
            boolean cellsActive = states.values().stream().anyMatch(t -> t.queued() || t.running());
            String cj = collectJob == null ? null : Slurm.jobState(collectJob);
            boolean collectActive = cj != null && (cj.equals("PENDING") || cj.equals("RUNNING") || cj.equals("COMPLETING")
                    || cj.equals("CONFIGURING"));
            if (!cellsActive && !collectActive) {
                o.printf(Locale.ROOT, "[%4.0f s] %s%s%n", (System.nanoTime() - start) / 1e9, SweepStatus.summary(rows),
                        collectJob == null ? "" : "; collection job " + collectJob + " " + (cj == null ? "gone" : cj));
                if (Files.isRegularFile(out.resolve("results.md"))) {
                    o.print(Files.readString(out.resolve("results.md")));
                }
                o.flush();
                return rows.stream().allMatch(r -> r.state() == SweepStatus.State.DONE) ? 0 : 1;
            }
            Thread.sleep(3000);
        }
    }

    // ---- inside the cluster ----

    private int status(Path dir) throws Exception {
        SweepSpec sweep = SweepSpec.read(dir);
        Map<Integer, Slurm.TaskState> states = sweep.submissions().isEmpty() ? Map.of() : Slurm.states(sweep);
        List<SweepStatus.Row> rows = SweepStatus.of(dir, sweep, states);
        PrintWriter o = spec.commandLine().getOut();
        if (options.json) {
            Output.json(o, rows.stream().map(r -> Map.of("index", r.index(), "cell", r.cell(), "state", r.state().label(),
                    "detail", r.detail())).toList());
        } else {
            int w = rows.stream().mapToInt(r -> r.cell().length()).max().orElse(4);
            for (SweepStatus.Row r : rows) {
                o.printf(Locale.ROOT, "%3d  %-" + w + "s  %-7s  %s%n", r.index(), r.cell(), r.state().label(), r.detail());
            }
            o.println(SweepStatus.summary(rows));
        }
        o.flush();
        return 0;
    }

    private int collect(Path dir) throws Exception {
        SweepSpec sweep = SweepSpec.read(dir);
        Sweep.Collected c = Sweep.collect(dir, sweep.cells());
        PrintWriter o = spec.commandLine().getOut();
        o.print(Files.readString(dir.resolve("results.md")));
        o.flush();
        if (!c.unfinished().isEmpty()) {
            throw new IllegalStateException(dir + ": " + c.unfinished().size() + " of " + sweep.cells().size() + " cells have no report ("
                    + String.join(", ", c.unfinished()) + "); results.md has the others; lopper sweep --status " + dir + " says why");
        }
        return 0;
    }

    private int runCell(Path dir, String index) throws Exception {
        Path abs = dir.toAbsolutePath().normalize();
        SweepSpec sweep = SweepSpec.read(abs);
        int n;
        try {
            n = Integer.parseInt(index);
        } catch (NumberFormatException e) {
            n = -1;
        }
        if (n < 0 || n >= sweep.cells().size()) {
            throw new IllegalArgumentException("--run-cell " + dir + " " + index + ": expected a cell index from 0 to " + (sweep.cells().size() - 1));
        }
        SweepCommand c = parse(sweep.args(), abs);
        if (!Sweep.points(c.methods, c.ratios).equals(sweep.cells())) {
            throw new IllegalArgumentException(abs.resolve(SweepSpec.FILE) + ": its cells do not follow from its args; expected a file lopper sweep wrote");
        }
        c.options.threads = options.threads;
        String slurmCpus = System.getenv("SLURM_CPUS_PER_TASK");
        if (c.options.threads == null && slurmCpus != null && slurmCpus.matches("[0-9]+")) {
            c.options.threads = Integer.parseInt(slurmCpus);
        }
        Progress progress = Progress.console(System.err);
        Sweep.Cell cell = new Sweep().runCell(c.request(progress), sweep.cells().get(n));
        PrintWriter o = spec.commandLine().getOut();
        if (options.json) {
            Output.json(o, Map.of("cell", cell.name(), "skipped", cell.skipped(), "report", abs.resolve(cell.name()).resolve(Sweep.REPORT).toString()));
        } else {
            o.printf("cell %s: %s (%s)%n", cell.name(), cell.skipped() ? "finished earlier, skipped" : "done",
                    abs.resolve(cell.name()).resolve(Sweep.REPORT));
        }
        o.flush();
        return 0;
    }
}
