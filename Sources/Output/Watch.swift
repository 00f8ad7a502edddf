import Glibc
import Inspect

/// `watch`'s lines: one per sample (a header before the first), then the summary.
public enum WatchFormat {
    public static func sample(_ s: WatchSample, json: Bool) -> String {
        if json {
            return JSONWriter.documentLine { o in
                o.field("sample", s.number); o.field("time_us", UInt64(max(0, s.time) * 1e6)); o.field("pause_us", s.pauseMicroseconds)
                o.field("in_use_bytes", s.inUse); o.field("free_bytes", s.free); o.field("top_bytes", s.top)
                o.field("mmapped_bytes", s.mmapped); o.field("arenas", s.arenas); o.field("threads", s.threads)
                o.field("slope_bytes_per_s", s.slope); o.field("snapshot", s.snapshot); o.field("rss_bytes", s.rss)
            }
        }
        var text = ""
        if s.number == 1 {
            text += "\(pad("time", 8)) \(pad("pause", 9)) \(pad("rss", 10)) \(pad("in use", 10)) \(pad("free", 10)) \(pad("top", 10)) \(pad("mmapped", 10)) \(pad("arenas", 6)) \(pad("threads", 7))  slope of in use\n"
        }
        let ms = Double(s.pauseMicroseconds) / 1000
        text += "\(pad(clock(), 8)) \(pad(format1(ms) + " ms", 9)) \(pad(s.rss.map(human) ?? "-", 10)) \(pad(human(s.inUse), 10)) \(pad(human(s.free), 10)) \(pad(human(s.top), 10)) "
        text += "\(pad(human(s.mmapped), 10)) \(pad(String(s.arenas), 6)) \(pad(String(s.threads), 7))  \(s.slope.map(perMinute) ?? "-")"
        if let file = s.snapshot { text += "  snapshot \(file)" }
        return text + "\n"
    }

    /// The note (for standard error) when samples begin to be spaced beyond the interval.
    public static func stretchedNote(interval: String, maxDuty: Double) -> String {
        "spacing samples further apart than --interval \(interval): the target would be stopped more than \(format1(maxDuty))% of the time (--max-duty)"
    }

    public static func summary(_ w: WatchSummary, maxDuty: Double, json: Bool) -> String {
        guard let first = w.samples.first, let last = w.samples.last else { return "" }
        if json {
            return JSONWriter.documentLine { j in
                j.object("summary") { o in
                    o.field("ended", w.reason); o.field("samples", w.samples.count); o.field("duration_us", UInt64(max(0, last.time - first.time) * 1e6))
                    o.field("in_use_first", first.inUse); o.field("in_use_last", last.inUse); o.field("slope_bytes_per_s", w.slope)
                    o.field("max_pause_us", w.maxPause); o.field("stopped_us", w.stoppedMicroseconds); o.field("stopped_percent", w.stoppedPercent)
                    o.field("skipped_ticks", w.skippedTicks); o.field("stretched_samples", w.stretched); o.field("snapshots", strings: w.files)
                    if let age = w.olderThan {
                        o.field("older_than_us", UInt64(max(0, min(age, 1e12)) * 1e6)); o.field("window_first_sample", w.windowFirst); o.field("window_samples", w.windowSamples)
                        o.array("old_chunks") { a in
                            for g in w.old {
                                a.object { $0.field("size", g.size); $0.field("chunks", g.count); $0.field("bytes", g.bytes); $0.field("age_us", UInt64(max(0, last.time - g.since) * 1e6)) }
                            }
                        }
                    }
                }
            }
        }
        let n = w.samples.count
        var s = "\nended (\(w.reason)) after \(n) sample\(n == 1 ? "" : "s") over \(format1(last.time - first.time)) s: in use \(human(first.inUse)) -> \(human(last.inUse)) (\(signedHuman(Int64(last.inUse) - Int64(first.inUse)))), slope \(w.slope.map(perMinute) ?? "-"), longest pause \(format1(Double(w.maxPause) / 1000)) ms, stopped \(format1(Double(w.stoppedMicroseconds) / 1000)) ms in all (\(decimal3(w.stoppedPercent))% of the time)\n"
        if w.skippedTicks > 0 { s += "\(w.skippedTicks) interval tick\(w.skippedTicks == 1 ? " was" : "s were") skipped: a sample took longer than --interval\n" }
        if w.stretched > 0 { s += "\(w.stretched) sample\(w.stretched == 1 ? " was" : "s were") spaced beyond --interval to keep the target stopped at most \(format1(maxDuty))% of the time (--max-duty)\n" }
        if !w.files.isEmpty { s += "snapshots: \(w.files.joined(separator: " "))\n" }
        if let age = w.olderThan {
            let total = w.old.reduce((0, UInt64(0))) { ($0.0 + $1.count, $0.1 + $1.bytes) }
            let span = w.windowSamples == 1 ? "sample \(w.windowFirst)" : "samples \(w.windowFirst)-\(w.windowFirst + w.windowSamples - 1)"
            s += "\nchunks present in every sample of the last \(format1(age)) s (\(span) of \(w.samples.count)): \(total.0) (\(human(total.1))), by size:\n"
            s += "\(pad("size", 10)) \(pad("chunks", 9)) \(pad("bytes", 10))  oldest seen\n"
            for g in w.old.prefix(30) { s += "\(pad(String(g.size), 10)) \(pad(String(g.count), 9)) \(pad(human(g.bytes), 10))  \(format1(last.time - g.since)) s\n" }
            if w.old.count > 30 { s += "... \(w.old.count - 30) more sizes (see --json)\n" }
        }
        return s
    }

    static func clock() -> String {
        var t = time(nil), tmv = tm()
        localtime_r(&t, &tmv)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec))"
    }
    static func perMinute(_ bytesPerSecond: Double) -> String { signedHuman(Int64(bytesPerSecond * 60)) + "/min" }
    static func signedHuman(_ v: Int64) -> String { (v < 0 ? "-" : "+") + human(v.magnitude) }
}
