import CShim
import Glibc
import ProcessAccess
import Snapshot
import HeapModel

/// Chunks outstanding in every sample since they were first seen (MemScope's "old allocations"):
/// merged sample by sample in address order, O(chunks) per sample.
public struct SurvivorTracker: Sendable {
    public private(set) var address: [UInt64] = [], size: [UInt64] = [], firstSeen: [Double] = []
    public private(set) var samples = 0
    public init() {}

    /// Add one sample taken at `time` (seconds): chunks not outstanding in it are forgotten, new
    /// ones start their age now. A chunk freed and allocated again between samples looks the same.
    public mutating func add(_ t: ChunkTable, at time: Double) {
        var a: [UInt64] = [], s: [UInt64] = [], f: [Double] = []
        a.reserveCapacity(t.count); s.reserveCapacity(t.count); f.reserveCapacity(t.count)
        var j = 0
        for i in 0..<t.count where t.isOutstanding(i) {
            let x = t.address[i]
            while j < address.count && address[j] < x { j += 1 }
            let kept = j < address.count && address[j] == x && size[j] == t.size[i]
            a.append(x); s.append(t.size[i]); f.append(kept ? firstSeen[j] : time)
        }
        address = a; size = s; firstSeen = f
        samples += 1
    }

    /// The chunks present in every sample of the window — the samples taken in the last `age`
    /// seconds (at or after the last sample's time less `age`; `times`: every sample's time, in
    /// order) — grouped by size: (size, count, bytes, first seen), most bytes first; and the
    /// window's first sample (index into `times`). A window longer than the watch holds every sample.
    public func present(within age: Double, times: [Double]) -> (groups: [(size: UInt64, count: Int, bytes: UInt64, since: Double)], first: Int) {
        guard let last = times.last else { return ([], 0) }
        let first = times.firstIndex { $0 >= last - age } ?? times.count - 1
        let from = times[first]
        var by: [UInt64: (count: Int, since: Double)] = [:]
        for k in 0..<address.count where firstSeen[k] <= from {
            let e = by[size[k]] ?? (0, firstSeen[k])
            by[size[k]] = (e.count + 1, min(e.since, firstSeen[k]))
        }
        let groups = by.map { (size: $0.key, count: $0.value.count, bytes: $0.key * UInt64($0.value.count), since: $0.value.since) }
            .sorted { $0.bytes != $1.bytes ? $0.bytes > $1.bytes : $0.size < $1.size }
        return (groups, first)
    }
}

/// Least-squares slope of y over t (units of y per second); nil under two points.
public func slope(_ points: [(t: Double, y: Double)]) -> Double? {
    guard points.count >= 2 else { return nil }
    let n = Double(points.count)
    let mt = points.reduce(0) { $0 + $1.t } / n, my = points.reduce(0) { $0 + $1.y } / n
    var num = 0.0, den = 0.0
    for p in points { num += (p.t - mt) * (p.y - my); den += (p.t - mt) * (p.t - mt) }
    return den > 0 ? num / den : nil
}

/// What `watch` does: sample the heap every `interval` seconds, a snapshot file every K-th sample.
public struct WatchPlan: Sendable {
    public var pid: Int32
    public var interval: Double
    public var count: Int?
    /// Directory for snapshot files (checked before the first sample), and every how many samples.
    public var directory: String?
    public var snapshotEvery = 1
    public var follow = false
    /// Report the chunks present in every sample of the last this many seconds.
    public var olderThan: Double?
    /// The largest share of wall time the target may be stopped, in percent.
    public var maxDuty = 1.0
    public var options = InspectOptions()
    public init(pid: Int32, interval: Double) { self.pid = pid; self.interval = interval }
}

/// One sample of `watch`.
public struct WatchSample: Sendable {
    public var number: Int
    /// Seconds since the watch began.
    public var time: Double
    public var pauseMicroseconds: UInt64
    public var inUse: UInt64, free: UInt64, top: UInt64, mmapped: UInt64
    public var arenas: Int, threads: Int
    /// Least-squares slope of in-use bytes over every sample so far (bytes per second).
    public var slope: Double?
    /// The snapshot file this sample wrote.
    public var snapshot: String?
    /// The process's resident memory when the sample was taken (nil: not known).
    public var rss: UInt64? = nil
    /// This sample was spaced beyond the interval to keep --max-duty, for the first time.
    public var firstStretched = false
}

/// How a watch ended.
public struct WatchSummary: Sendable {
    public var reason: String
    /// 0, 5 (the target exited), 128+N (a signal other than SIGINT), or the failing sample's status.
    public var status: Int32
    public var samples: [WatchSample]
    public var slope: Double?
    public var stoppedMicroseconds: UInt64
    /// Seconds from the start to the end.
    public var wall: Double
    /// Interval ticks skipped because a sample ran past them; samples spaced out for --max-duty.
    public var skippedTicks: Int, stretched: Int
    public var files: [String]
    public var olderThan: Double?
    /// The chunks present in every sample of the last `olderThan` seconds, by size, most bytes first.
    public var old: [(size: UInt64, count: Int, bytes: UInt64, since: Double)]
    /// That window's first sample (1-based), and how many samples it holds.
    public var windowFirst = 1, windowSamples = 0
    public var stoppedPercent: Double { wall > 0 ? 100 * Double(stoppedMicroseconds) / 1e6 / wall : 0 }
    public var maxPause: UInt64 { samples.map(\.pauseMicroseconds).max() ?? 0 }
}

public enum Watcher {
    /// Sample until `plan.count` samples, a stop signal (SIGINT ends it with 0), or the target's
    /// exit (5). A failure before the first sample is thrown; later ones end the watch (the
    /// summary says why). `onSample` gets each sample as it is taken; `onWarning` what went
    /// wrong without ending it (a snapshot file not written).
    public static func run(_ plan: WatchPlan, onSample: (WatchSample) -> Void, onWarning: (String) -> Void) throws(Failure) -> WatchSummary {
        hs_catch_stop_signals()
        if let d = plan.directory {
            do { try OutputFile.directory(d, follow: plan.follow) } catch { throw Failure(.otherError, error.description) }
        }
        let step = plan.interval, start = monotonicSeconds(), pid = plan.pid
        var samples: [WatchSample] = [], survivors = SurvivorTracker(), files: [String] = []
        var ended: (reason: String, code: Int32) = ("", 0)
        var skippedTicks = 0, stretched = 0, stoppedUs: UInt64 = 0
        var dueTick = 0   // the interval tick the current sample was due at
        loop: while true {
            let n = samples.count + 1
            let full = plan.directory != nil && (n - 1) % plan.snapshotEvery == 0
            let report: HeapReport
            var written: String? = nil
            do {
                if full {
                    let s = try Inspector.snapshot(pid: pid, options: plan.options)
                    let path = "\(plan.directory!)/\(pid)-\(n).snap"
                    do { try SnapshotFile.write(s, to: OutputFile(path)); files.append(path); written = path } catch { onWarning(error.description) }
                    report = s.report
                } else {
                    report = try Inspector.inspect(pid: pid, options: plan.options)
                }
            } catch {
                // No sample yet: fail as any command does. Later: the summary, then the exit code.
                if samples.isEmpty { throw error.failure }
                switch error {
                case .process(.noSuchProcess), .process(.targetExited): ended = ("target \(pid) exited", ExitStatus.targetExited.rawValue)
                // Ctrl-C is how a watch is ended (exit 0, like the other stop signals between
                // samples are not); any other signal ends it with 128+N.
                case .process(.interrupted(let sig)): ended = ("interrupted by signal \(sig)", sig == SIGINT ? 0 : ExitStatus.signal(sig))
                default:
                    onWarning(error.description)
                    ended = (error.description, error.exitCode)
                }
                break loop
            }
            let now = monotonicSeconds() - start
            var s = WatchSample(number: n, time: now, pauseMicroseconds: report.pauseMicroseconds,
                                inUse: report.total(.inUse).bytes,
                                free: report.total(.cachedFree).bytes + report.total(.allocatorFree).bytes, top: report.total(.top).bytes,
                                mmapped: report.total(.inUse, ownMapping: true).bytes, arenas: report.arenas.count,
                                threads: report.threads.count, slope: nil, snapshot: written)
            s.rss = report.memory?.rss
            stoppedUs += report.pauseMicroseconds
            if plan.olderThan != nil { survivors.add(report.chunks, at: now) }
            s.slope = Inspect.slope((samples + [s]).map { ($0.time, Double($0.inUse)) })
            // The next sample: the next tick of the interval still ahead (ticks missed while a sample
            // ran long are skipped, never taken back to back), and no earlier than keeps the time
            // stopped within --max-duty of the wall time.
            if let c = plan.count, n >= c {
                samples.append(s); onSample(s)
                ended = ("\(c) samples", 0); break
            }
            let done = ((monotonicSeconds() - start) / step).rounded(.down) + 1   // the first tick still ahead
            skippedTicks += max(0, Int(done) - dueTick - 1)
            let dutyTick = ((Double(stoppedUs) / 1e6 / (plan.maxDuty / 100)) / step).rounded(.up)
            dueTick = Int(max(done, dutyTick))
            if dutyTick > done { stretched += 1; s.firstStretched = stretched == 1 }
            samples.append(s)
            onSample(s)
            let next = start + Double(dueTick) * step
            while hs_stop_signal() == 0 {
                Attachment.releaseLeftovers()   // a thread that was in D state when a sample gave up
                let left = next - monotonicSeconds()
                if left <= 0 { break }
                usleep(UInt32(min(left, 0.2) * 1_000_000))
            }
            if hs_stop_signal() != 0 { let sig = hs_stop_signal(); ended = ("signal \(sig)", sig == SIGINT ? 0 : ExitStatus.signal(sig)); break }
        }
        let window = plan.olderThan.map { survivors.present(within: $0, times: samples.map(\.time)) }
        var summary = WatchSummary(reason: ended.reason, status: ended.code, samples: samples,
                            slope: Inspect.slope(samples.map { ($0.time, Double($0.inUse)) }),
                            stoppedMicroseconds: stoppedUs, wall: monotonicSeconds() - start, skippedTicks: skippedTicks,
                            stretched: stretched, files: files, olderThan: plan.olderThan,
                            old: window?.groups ?? [])
        if let w = window { summary.windowFirst = w.first + 1; summary.windowSamples = samples.count - w.first }
        return summary
    }
}

/// Seconds on the monotonic clock.
public func monotonicSeconds() -> Double { Double(hs_monotonic_ns()) / 1e9 }
