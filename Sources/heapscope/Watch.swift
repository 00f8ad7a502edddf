import ArgumentParser
import CShim
import Glibc
import HeapModel
import Inspect
import Output
import ProcessAccess
import Snapshot

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample a process's heap periodically: one line per sample, snapshots every K samples, chunks that never go away.",
        discussion: """
        Each sample is a light inspection (the heap only, as `stat`): pause, bytes in use \
        (outstanding chunks), free (caches and free lists), top, mmapped, arenas, threads, and the \
        slope of in-use bytes (least squares over all samples so far). With --out DIR and \
        --snapshot-every K, every K-th sample is a full snapshot (as `heapscope snapshot`: a \
        longer pause) written to DIR/PID-N.snap. --older-than AGE: at the end, the chunks that \
        were outstanding in every sample for at least AGE, grouped by size.

        Ends after --count samples, on Ctrl-C (SIGINT), SIGTERM or SIGHUP (exit 0, with a \
        summary), or when the target exits (summary, exit 5). Durations: 500ms, 10s, 5m, 2h \
        (a bare number is seconds). --json prints one JSON object per line, the summary last.
        """)
    @Argument(help: "Process id of the target.") var pid: Int32
    @Option(help: "Time between samples.") var interval = "10s"
    @Option(help: "Stop after this many samples (default: until interrupted).") var count: Int?
    @Option(help: ArgumentHelp("Directory for snapshot files.", valueName: "dir")) var out: String?
    @Option(help: "With --out: every K-th sample is a full snapshot file.") var snapshotEvery = 1
    @Option(help: ArgumentHelp("At the end, list chunks outstanding in every sample for at least this long.", valueName: "age"))
    var olderThan: String?
    @Flag(help: "One JSON object per line instead of text.") var json = false
    @Flag(help: "Do not use separate debug files; find malloc's state by signature.") var noDebuginfo = false
    @Flag(help: "Accept --out as a symbolic link to a directory (refused otherwise).") var follow = false
    @Option(help: ArgumentHelp("The longest one sample may stop the target (every attempt counted).", valueName: "duration"))
    var maxStop = "1s"
    @Option(help: ArgumentHelp("The largest share of wall time the target may spend stopped, in percent; samples are spaced further apart to keep it.", valueName: "percent"))
    var maxDuty = 1.0

    func validate() throws {
        if pid <= 0 { throw ValidationError("pid must be a positive process id, got \(pid)") }
        if (parseDuration(interval) ?? 0) <= 0 { throw ValidationError("--interval takes a duration such as 500ms, 10s, 5m: got '\(interval)'") }
        if let c = count, c <= 0 { throw ValidationError("--count must be > 0") }
        if snapshotEvery <= 0 { throw ValidationError("--snapshot-every must be > 0") }
        if let o = olderThan, parseDuration(o) == nil { throw ValidationError("--older-than takes a duration such as 3600s or 1h: got '\(o)'") }
        _ = try maxStopMicroseconds(maxStop)
        if !(maxDuty > 0 && maxDuty <= 100) { throw ValidationError("--max-duty takes a percentage above 0 and at most 100: got \(maxDuty)") }
    }

    struct Sample { var time: Double; var pause: UInt64; var inUse: UInt64; var free: UInt64; var top: UInt64; var mmapped: UInt64; var arenas: Int; var threads: Int }

    func run() throws {
        hs_catch_stop_signals()
        var options = InspectOptions()
        if noDebuginfo { options.useDebugInfo = false }
        options.maxStopMicroseconds = try maxStopMicroseconds(maxStop)
        if let out {
            do { try OutputFile.directory(out, follow: follow) } catch { throw failure(error.description, code: ExitStatus.otherError.rawValue, json: json) }
        }
        let step = parseDuration(interval)!, start = monotonic()
        var samples: [Sample] = [], survivors = SurvivorTracker(), files: [String] = []
        var ended: (reason: String, code: Int32) = ("", 0)
        var skippedTicks = 0, stretched = 0, stoppedUs: UInt64 = 0
        var dueTick = 0   // the interval tick the current sample was due at
        loop: while true {
            let n = samples.count + 1
            let full = out != nil && (n - 1) % snapshotEvery == 0
            let report: HeapReport
            do {
                if full {
                    let s = try Inspector.snapshot(pid: pid, options: options)
                    let path = "\(out!)/\(pid)-\(n).snap"
                    do { try SnapshotFile.write(s, to: OutputFile(path)); files.append(path) } catch {
                        FileHandleErr.write("heapscope: \(error.description)\n")
                    }
                    report = s.report
                } else {
                    report = try Inspector.inspect(pid: pid, options: options)
                }
            } catch {
                // No sample yet: fail as any command does. Later: the summary, then the exit code.
                if samples.isEmpty { throw failure(error.description, code: error.exitCode, json: json) }
                switch error {
                case .process(.noSuchProcess), .process(.targetExited): ended = ("target \(pid) exited", 5)
                // Ctrl-C is how a watch is ended (exit 0, like the other stop signals between
                // samples are not); any other signal ends it with 128+N.
                case .process(.interrupted(let sig)): ended = ("interrupted by signal \(sig)", sig == SIGINT ? 0 : 128 + sig)
                default:
                    FileHandleErr.write("heapscope: \(error.description)\n")
                    ended = (error.description, error.exitCode)
                }
                break loop
            }
            let now = monotonic() - start
            let s = Sample(time: now, pause: report.pauseMicroseconds,
                           inUse: report.total(.inUse).bytes,
                           free: report.total(.cachedFree).bytes + report.total(.allocatorFree).bytes, top: report.total(.top).bytes,
                           mmapped: report.total(.inUse, ownMapping: true).bytes, arenas: report.arenas.count, threads: report.threads.count)
            samples.append(s)
            stoppedUs += report.pauseMicroseconds
            if olderThan != nil { survivors.add(report.chunks, at: now) }
            let sl = slope(samples.map { ($0.time, Double($0.inUse)) })
            printSample(s, n: n, slope: sl, file: full ? files.last : nil)
            if let c = count, samples.count >= c { ended = ("\(c) samples", 0); break }
            // The next sample: the next tick of the interval still ahead (ticks missed while a sample
            // ran long are skipped, never taken back to back), and no earlier than keeps the time
            // stopped within --max-duty of the wall time.
            let done = ((monotonic() - start) / step).rounded(.down) + 1   // the first tick still ahead
            skippedTicks += max(0, Int(done) - dueTick - 1)
            let dutyTick = ((Double(stoppedUs) / 1e6 / (maxDuty / 100)) / step).rounded(.up)
            dueTick = Int(max(done, dutyTick))
            if dutyTick > done {
                stretched += 1
                if stretched == 1 && !json {
                    FileHandleErr.write("heapscope: spacing samples further apart than --interval \(interval): the target would be stopped more than \(format1(maxDuty))% of the time (--max-duty)\n")
                }
            }
            let next = start + Double(dueTick) * step
            while hs_stop_signal() == 0 {
                Attachment.releaseLeftovers()   // a thread that was in D state when a sample gave up
                let left = next - monotonic()
                if left <= 0 { break }
                usleep(UInt32(min(left, 0.2) * 1_000_000))
            }
            if hs_stop_signal() != 0 { let sig = hs_stop_signal(); ended = ("signal \(sig)", sig == SIGINT ? 0 : 128 + sig); break }
        }
        summary(samples, survivors: survivors, files: files, reason: ended.reason,
                pacing: (skippedTicks, stretched, stoppedUs, monotonic() - start))
        if ended.code != 0 { throw ExitCode(ended.code) }
    }

    func printSample(_ s: Sample, n: Int, slope: Double?, file: String?) {
        if json {
            var o = "{\"sample\":\(n),\"time_s\":\(format3(s.time)),\"pause_us\":\(s.pause),\"in_use_bytes\":\(s.inUse),\"free_bytes\":\(s.free)"
            o += ",\"top_bytes\":\(s.top),\"mmapped_bytes\":\(s.mmapped),\"arenas\":\(s.arenas),\"threads\":\(s.threads)"
            o += ",\"slope_bytes_per_s\":\(slope.map { format3($0) } ?? "null"),\"snapshot\":\(file.map(jsonString) ?? "null")}"
            print(o)
        } else {
            if n == 1 { print("\(pad("time", 8)) \(pad("pause", 9)) \(pad("in use", 10)) \(pad("free", 10)) \(pad("top", 10)) \(pad("mmapped", 10)) \(pad("arenas", 6)) \(pad("threads", 7))  slope of in use") }
            let ms = Double(s.pause) / 1000
            var line = "\(pad(clock(), 8)) \(pad(format1(ms) + " ms", 9)) \(pad(human(s.inUse), 10)) \(pad(human(s.free), 10)) \(pad(human(s.top), 10)) "
            line += "\(pad(human(s.mmapped), 10)) \(pad(String(s.arenas), 6)) \(pad(String(s.threads), 7))  \(slope.map(perMinute) ?? "-")"
            if let file { line += "  snapshot \(file)" }
            print(line)
        }
        fflush(nil)
    }

    /// `pacing`: interval ticks skipped because a sample ran past them, samples spaced out for
    /// --max-duty, seconds the target was stopped, seconds watched.
    func summary(_ samples: [Sample], survivors: SurvivorTracker, files: [String], reason: String,
                 pacing: (skipped: Int, stretched: Int, stoppedUs: UInt64, wall: Double)) {
        let duty = pacing.wall > 0 ? 100 * Double(pacing.stoppedUs) / 1e6 / pacing.wall : 0
        guard let first = samples.first, let last = samples.last else { return }
        let sl = slope(samples.map { ($0.time, Double($0.inUse)) })
        let maxPause = samples.map(\.pause).max() ?? 0
        let age = olderThan.flatMap(parseDuration)
        let old = age.map { survivors.older(than: $0, now: last.time) } ?? []
        if json {
            var o = "{\"summary\":{\"ended\":\(jsonString(reason)),\"samples\":\(samples.count),\"duration_s\":\(format3(last.time - first.time))"
            o += ",\"in_use_first\":\(first.inUse),\"in_use_last\":\(last.inUse),\"slope_bytes_per_s\":\(sl.map { format3($0) } ?? "null")"
            o += ",\"max_pause_us\":\(maxPause),\"stopped_us\":\(pacing.stoppedUs),\"stopped_percent\":\(format3(duty))"
            o += ",\"skipped_ticks\":\(pacing.skipped),\"stretched_samples\":\(pacing.stretched),\"snapshots\":[\(files.map(jsonString).joined(separator: ","))]"
            if let age {
                o += ",\"older_than_s\":\(format3(age)),\"old_chunks\":[" + old.map {
                    "{\"size\":\($0.size),\"chunks\":\($0.count),\"bytes\":\($0.bytes),\"age_s\":\(format3(last.time - $0.since))}"
                }.joined(separator: ",") + "]"
            }
            print(o + "}}")
        } else {
            print("\nended (\(reason)) after \(samples.count) sample\(samples.count == 1 ? "" : "s") over \(format1(last.time - first.time)) s: in use \(human(first.inUse)) -> \(human(last.inUse)) (\(signedHuman(Int64(last.inUse) - Int64(first.inUse)))), slope \(sl.map(perMinute) ?? "-"), longest pause \(format1(Double(maxPause) / 1000)) ms, stopped \(format1(Double(pacing.stoppedUs) / 1000)) ms in all (\(format3(duty))% of the time)")
            if pacing.skipped > 0 { print("\(pacing.skipped) interval tick\(pacing.skipped == 1 ? " was" : "s were") skipped: a sample took longer than --interval") }
            if pacing.stretched > 0 { print("\(pacing.stretched) sample\(pacing.stretched == 1 ? " was" : "s were") spaced beyond --interval to keep the target stopped at most \(format1(maxDuty))% of the time (--max-duty)") }
            if !files.isEmpty { print("snapshots: \(files.joined(separator: " "))") }
            if let age {
                let total = old.reduce((0, UInt64(0))) { ($0.0 + $1.count, $0.1 + $1.bytes) }
                print("\nchunks outstanding in every sample for at least \(format1(age)) s: \(total.0) (\(human(total.1))), by size:")
                print("\(pad("size", 10)) \(pad("chunks", 9)) \(pad("bytes", 10))  oldest")
                for g in old.prefix(30) { print("\(pad(String(g.size), 10)) \(pad(String(g.count), 9)) \(pad(human(g.bytes), 10))  \(format1(last.time - g.since)) s") }
                if old.count > 30 { print("... \(old.count - 30) more sizes (see --json)") }
            }
        }
    }

    func clock() -> String {
        var t = time(nil), tmv = tm()
        localtime_r(&t, &tmv)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec))"
    }
    func perMinute(_ bytesPerSecond: Double) -> String { signedHuman(Int64(bytesPerSecond * 60)) + "/min" }
    func signedHuman(_ v: Int64) -> String { (v < 0 ? "-" : "+") + human(v.magnitude) }
}

func format3(_ v: Double) -> String {
    let r = (v * 1000).rounded() / 1000
    return r == r.rounded() ? String(Int64(r)) : String(r)
}
