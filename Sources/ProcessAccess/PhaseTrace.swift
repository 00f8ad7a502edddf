import Glibc

/// HEAPSCOPE_TRACE=1 prints how long each phase of the capture took (to stderr).
public final class PhaseTrace {
    let on = getenv("HEAPSCOPE_TRACE").map { String(cString: $0) != "0" } ?? false
    let start: Double
    var last: Double
    public init() { start = PhaseTrace.now(); last = start }
    static func now() -> Double {
        var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) * 1e6 + Double(t.tv_nsec) / 1e3
    }
    public func mark(_ what: String) {
        guard on else { return }
        let n = PhaseTrace.now()
        let s = "heapscope: \(what): \(Int(n - last)) us\(PhaseTrace.memory())\n"; _ = s.withCString { write(2, $0, strlen($0)) }
        last = n
    }
    /// ", rss N MiB, peak N MiB" of heapscope itself.
    static func memory() -> String {
        let m = ProcFS.ownMemoryKilobytes()
        return ", rss \(m.rss >> 10) MiB, peak \(m.peak >> 10) MiB"
    }
    public func note(_ what: String) {
        guard on else { return }
        let s = "heapscope: \(what)\n"; _ = s.withCString { write(2, $0, strlen($0)) }
    }
    public func done(_ what: String) {
        guard on else { return }
        let s = "heapscope: \(what): \(Int(PhaseTrace.now() - start)) us\(PhaseTrace.memory())\n"; _ = s.withCString { write(2, $0, strlen($0)) }
    }
}
