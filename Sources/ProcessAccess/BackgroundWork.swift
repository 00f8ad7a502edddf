import Glibc

/// Work done on a thread of its own while the caller goes on (the copy buffers faulted in by two
/// threads; `leaks`' labelling read beside its reference scan); `wait()` joins it and returns its result.
/// Where no thread can be made, the work is done at once, on the caller's thread.
public struct BackgroundWork<T> {
    /// Whether a second CPU is online: splitting a pass in two gains nothing without one.
    public static var secondCPU: Bool { twoCPUs }
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

private let twoCPUs = sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2
