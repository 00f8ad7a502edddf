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


/// Work done on a thread of its own while the caller goes on (heapscope's analyses after the
/// detach, where two of them read the copy independently); `wait()` joins it and returns its result.
/// Where no thread can be made, the work is done at once, on the caller's thread.
public struct BackgroundWork<T> {
    private let slot: ResultSlot<T>
    private var thread = pthread_t()
    private var running = false

    public init(_ work: @escaping () -> T) {
        let slot = ResultSlot<T>()
        self.slot = slot
        let body = Unmanaged.passRetained(ThreadBody { slot.value = work() })
        running = pthread_create(&thread, nil, runThreadBody, body.toOpaque()) == 0
        if !running { body.takeRetainedValue().run() }
    }

    /// The result (joining the thread the first time).
    public mutating func wait() -> T {
        if running { pthread_join(thread, nil); running = false }
        return slot.value!
    }
}

private final class ResultSlot<T> { var value: T? = nil }
private final class ThreadBody { let run: () -> Void; init(_ run: @escaping () -> Void) { self.run = run } }
private func runThreadBody(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().run()
    return nil
}
