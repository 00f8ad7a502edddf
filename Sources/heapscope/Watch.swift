import ArgumentParser
import Glibc
import Inspect
import Output

struct Watch: ParsableCommand, JSONCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample a process's heap periodically: one line per sample, snapshots every K samples, chunks that never go away.",
        discussion: """
        Each sample is a light inspection (the heap only, as `stat`): pause, bytes in use \
        (outstanding chunks), free (caches and free lists), top, mmapped, arenas, threads, and the \
        slope of in-use bytes (least squares over all samples so far). With --out DIR and \
        --snapshot-every K, every K-th sample is a full snapshot (as `heapscope snapshot`: a \
        longer pause) written to DIR/PID-N.snap. --older-than AGE: at the end, the chunks present \
        in every sample of the last AGE (the samples taken at or after the last one's time less \
        AGE; all of them when AGE is longer than the watch), grouped by size: what stays.

        Ends after --count samples, on Ctrl-C (SIGINT), SIGTERM or SIGHUP (exit 0, with a \
        summary), or when the target exits (summary, exit 5). Durations: 500ms, 10s, 5m, 2h \
        (a bare number is seconds). --json prints one JSON object per line, the summary last.
        """ + Examples.watch)
    @Argument(help: "Process id of the target.") var pid: Int32
    @Option(help: "Time between samples.") var interval = "10s"
    @Option(help: "Stop after this many samples (default: until interrupted).") var count: Int?
    @Option(help: ArgumentHelp("Directory for snapshot files.", valueName: "dir")) var out: String?
    @Option(help: "With --out: every K-th sample is a full snapshot file.") var snapshotEvery = 1
    @Option(help: ArgumentHelp("At the end, list the chunks present in every sample of the last AGE (all samples if longer than the watch).", valueName: "age"))
    var olderThan: String?
    @Flag(help: "One JSON object per line instead of text.") var json = false
    @Flag(help: "Do not use separate debug files; find malloc's state by signature.") var noDebuginfo = false
    @Flag(help: "Accept --out as a symbolic link to a directory (refused otherwise).") var follow = false
    @Option(help: ArgumentHelp("The longest one sample may stop the target (every attempt counted).", valueName: "duration"))
    var maxStop = "1s"
    @Option(help: ArgumentHelp("The largest share of wall time the target may spend stopped, in percent; samples are spaced further apart to keep it.", valueName: "percent"))
    var maxDuty = 1.0
    @Option(help: ArgumentHelp("Copy each sample into an unnamed file in this directory instead of heapscope's memory (see stat --help).", valueName: "dir"))
    var spill: String? = nil

    func validate() throws {
        if pid <= 0 { throw ValidationError("pid must be a positive process id, got \(pid)") }
        if (parseDuration(interval) ?? 0) <= 0 { throw ValidationError("--interval takes a duration such as 500ms, 10s, 5m: got '\(interval)'") }
        if let c = count, c <= 0 { throw ValidationError("--count must be > 0") }
        if snapshotEvery <= 0 { throw ValidationError("--snapshot-every must be > 0") }
        if let o = olderThan, parseDuration(o) == nil { throw ValidationError("--older-than takes a duration such as 3600s or 1h: got '\(o)'") }
        _ = try maxStopMicroseconds(maxStop)
        if !(maxDuty > 0 && maxDuty <= 100) { throw ValidationError("--max-duty takes a percentage above 0 and at most 100: got \(maxDuty)") }
        try validateSpill(spill)
    }

    var wantsJSON: Bool { json }

    func run() throws {
        var plan = WatchPlan(pid: pid, interval: parseDuration(interval)!)
        plan.count = count; plan.directory = out; plan.snapshotEvery = snapshotEvery; plan.follow = follow
        plan.olderThan = olderThan.flatMap(parseDuration); plan.maxDuty = maxDuty
        plan.options.useDebugInfo = !noDebuginfo && Environment.debugInfoEnabled
        plan.options.maxStopMicroseconds = try maxStopMicroseconds(maxStop)
        plan.options.accountMemory = true
        plan.options.spillDirectory = spill
        let json = self.json, interval = self.interval, maxDuty = self.maxDuty
        let w = try Watcher.run(plan, onSample: { s in
            print(WatchFormat.sample(s, json: json), terminator: "")
            fflush(nil)
            if s.firstStretched && !json { Terminal.warn(WatchFormat.stretchedNote(interval: interval, maxDuty: maxDuty)) }
        }, onWarning: { Terminal.warn($0) })
        print(WatchFormat.summary(w, maxDuty: maxDuty, json: json), terminator: "")
        if w.status != 0 { throw Failure(status: w.status, "", outputComplete: true) }
    }
}
