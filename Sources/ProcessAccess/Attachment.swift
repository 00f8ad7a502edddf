import CShim
import Glibc

/// A stopped thread: its id, registers, and a signal to give back when detaching.
public struct StoppedThread: Sendable {
    public var tid: Int32
    public var regs: user_regs_struct
    /// A signal that arrived while heapscope was stopping the thread (signal-delivery-stop);
    /// it is re-delivered by PTRACE_DETACH so the target never loses it.
    public var pendingSignal: Int32
    public var fsBase: UInt64 { regs.fs_base }
    public var stackPointer: UInt64 { regs.rsp }
    public var pc: UInt64 { regs.rip }
}

/// Every thread of one process, stopped with PTRACE_SEIZE + PTRACE_INTERRUPT.
///
/// Safety rules kept here: the target is never written; every exit path detaches (`detach()`
/// is idempotent and also runs from `deinit`); termination signals to heapscope are blocked
/// while the target is stopped, so heapscope cannot die with the target stopped; signals that
/// arrive for the target are re-delivered; threads created while attaching are caught through
/// PTRACE_O_TRACECLONE and by re-listing /proc/PID/task until it is stable.
public final class Attachment {
    public let pid: Int32
    public private(set) var threads: [StoppedThread] = []
    public private(set) var firstStopNs: UInt64 = 0
    public private(set) var detachedNs: UInt64 = 0
    private var seized: [Int32: Bool] = [:]   // tid -> stopped yet
    private var signals: [Int32: Int32] = [:]
    private var detached = false
    /// Longest time this attachment may keep the target stopped (waiting for stops included).
    public let budgetNs: UInt64
    /// A thread that has not stopped this long after being asked, while in uninterruptible sleep
    /// (D: a vfork parent, I/O, NFS), releases the others at once: waiting longer stops them too.
    public static let uninterruptibleGraceNs: UInt64 = 100_000_000
    /// Default stop budget (the CLI's --max-stop).
    public static let defaultBudgetNs: UInt64 = 1_000_000_000

    public var pauseMicroseconds: UInt64 { (detachedNs > firstStopNs ? detachedNs - firstStopNs : 0) / 1000 }

    /// Attach to and stop every thread of `pid`, keeping it stopped at most `budgetNs` while
    /// waiting for its threads. On any failure everything attached so far is detached.
    public init(pid: Int32, budgetNs: UInt64 = Attachment.defaultBudgetNs) throws(ProcessError) {
        self.pid = pid
        self.budgetNs = budgetNs
        Attachment.releaseLeftovers()
        guard ProcFS.exists(pid: pid) else { throw .noSuchProcess(pid: pid) }
        hs_block_termination_signals(1)
        do {
            try stopAll()
        } catch {
            detach()
            if case .threadWouldNotStop(let p, let t, let state, _, let others) = error {
                throw .threadWouldNotStop(pid: p, tid: t, state: state, stoppedMicroseconds: pauseMicroseconds, others: others)
            }
            throw error
        }
    }

    /// When the stop budget runs out (monotonic ns), once the first thread was asked to stop.
    public var deadlineNs: UInt64 { firstStopNs == 0 ? UInt64.max : firstStopNs &+ budgetNs }

    deinit { detach() }

    private func seize(_ tid: Int32) throws(ProcessError) -> Bool {
        let r = hs_ptrace_seize(tid, 1)
        if r == -ESRCH { return false }     // the thread exited meanwhile
        if r == -EPERM {
            // Another tracer on this thread (strace -p TID, a debugger): heapscope cannot hold it,
            // and it would run on during the copy. Refuse rather than copy a moving heap.
            if let tracer = ProcFS.tracer(pid: pid, tid: tid) {
                throw .tracedByOther(pid: pid, tid: tid, tracer: tracer.pid, tracerName: tracer.name)
            }
            if !ProcFS.exists(pid: pid) || access("/proc/\(pid)/task/\(tid)", F_OK) != 0 { return false }   // exited meanwhile
            throw .permissionDenied(pid: pid, reason: explainPermission(pid: pid))
        }
        if r < 0 { throw .system(call: "ptrace(PTRACE_SEIZE)", subject: "tid \(tid)", errno: -r) }
        let i = hs_ptrace_interrupt(tid)
        if firstStopNs == 0 { firstStopNs = hs_monotonic_ns() }
        if i < 0 && i != -ESRCH { throw .system(call: "ptrace(PTRACE_INTERRUPT)", subject: "tid \(tid)", errno: -i) }
        seized[tid] = false
        return true
    }

    /// The thread group's leader (its tid is the process id; `pid` may be another thread's).
    private lazy var leader: Int32 = (try? ProcFS.status(pid: pid))?["Tgid"].flatMap { Int32($0) } ?? pid

    private func stopAll() throws(ProcessError) {
        // Seize every listed thread; re-list until no new thread appears.
        var rounds = 0
        while true {
            let tids = try ProcFS.threadIDs(pid: pid)
            if tids.isEmpty { throw .noSuchProcess(pid: pid) }
            var added = false
            for t in tids where seized[t] == nil {
                // A zombie leader (it called pthread_exit while other threads live) has no user
                // state to stop. Other threads are reaped as they exit: only the leader lingers.
                if t == leader && ProcFS.threadState(pid: pid, tid: t) == "Z" { continue }
                if try seize(t) { added = true }
            }
            if seized.isEmpty { throw .noSuchProcess(pid: pid) }
            try waitForStops()
            rounds += 1
            if !added { break }
            if rounds > 1000 { break }   // a thread storm; the clone events still catch the rest
        }
        if seized.isEmpty { throw .targetExited(pid: pid, during: "while being attached") }
        // Registers of every stopped thread.
        for tid in seized.keys.sorted() {
            var regs = user_regs_struct()
            let r = hs_ptrace_getregs(tid, &regs)
            if r == -ESRCH { seized[tid] = nil; continue }
            if r < 0 { throw .system(call: "ptrace(PTRACE_GETREGS)", subject: "tid \(tid)", errno: -r) }
            threads.append(StoppedThread(tid: tid, regs: regs, pendingSignal: signals[tid] ?? 0))
        }
        if threads.isEmpty { throw .targetExited(pid: pid, during: "while being attached") }
    }

    /// Collect one stop from every seized thread (polling, so a thread stuck in D state cannot hang
    /// us): within the stop budget, and within a short grace for a thread in uninterruptible sleep.
    /// Each round collects every stop that is ready, so one slow thread does not delay the others'.
    private func waitForStops() throws(ProcessError) {
        let graceEnd = hs_monotonic_ns() + Attachment.uninterruptibleGraceNs
        var sleepUs: UInt32 = 0
        while true {
            let pending = seized.filter { !$0.value }.keys.sorted()
            if pending.isEmpty { return }
            var progressed = false
            for tid in pending {
                var status: Int32 = 0
                let r = Attachment.nextEvent(tid, &status)
                if r == 0 { continue }
                progressed = true
                if r == -ECHILD { seized[tid] = nil; continue }      // gone (already reaped)
                if r < 0 { throw .system(call: "waitid", subject: "tid \(tid)", errno: -r) }
                try record(tid, status: status)
            }
            if progressed { sleepUs = 0; continue }
            let now = hs_monotonic_ns()
            let stuck = now > deadlineNs ? pending.first : (now > graceEnd ? pending.first { ProcFS.threadState(pid: pid, tid: $0) == "D" } : nil)
            if let tid = stuck {
                let state = ProcFS.threadState(pid: pid, tid: tid)
                let wchan = ProcFS.wchan(pid: pid, tid: tid).map { w in
                    ["kernel_clone", "_do_fork", "do_fork", "wait_for_vfork_done"].contains(w) ? "\(w): a vfork parent waiting for its child to exec or exit" : w
                }
                let words = state == "D" ? "D state (uninterruptible sleep\(wchan.map { " in \($0)" } ?? ""))" : "state \(state)\(wchan.map { " (in \($0))" } ?? "")"
                throw .threadWouldNotStop(pid: pid, tid: tid, state: words, stoppedMicroseconds: 0,
                                          others: seized.values.filter { $0 }.count)
            }
            if sleepUs > 0 { usleep(sleepUs) }
            sleepUs = min(max(sleepUs * 2, 10), 2000)
        }
    }

    /// What one wait status of a seized thread means.
    private func record(_ tid: Int32, status: Int32) throws(ProcessError) {
        if hs_wifexited(status) != 0 || hs_wifsignaled(status) != 0 {
            seized[tid] = nil
            if seized.isEmpty || !ProcFS.exists(pid: pid) { throw .targetExited(pid: pid, during: "while being attached") }
            return
        }
        guard hs_wifstopped(status) != 0 else { return }
        let sig = hs_wstopsig(status)
        switch hs_wptrace_event(status) {
        case Int32(HS_PTRACE_EVENT_CLONE):
            var msg: UInt = 0
            if hs_ptrace_geteventmsg(tid, &msg) == 0, msg > 0, seized[Int32(msg)] == nil {
                seized[Int32(msg)] = false   // auto-attached; it reports its own stop
            }
        case 0:
            // Signal-delivery-stop: the signal was meant for the target. Keep it to re-deliver.
            if sig != SIGTRAP || signals[tid] == nil { signals[tid] = sig }
        default:
            break
        }
        seized[tid] = true
    }

    /// Detach from every thread, re-delivering pending signals. Safe to call more than once.
    /// A thread that was asked to stop but has not stopped (D state) cannot be detached until it
    /// does: it is kept in `leftovers` and released by `releaseLeftovers()` (or by heapscope's exit).
    public func detach() {
        if detached { return }
        detached = true
        Attachment.releaseLeftovers()
        for tid in seized.keys.sorted() {
            let r = hs_ptrace_detach(tid, signals[tid] ?? 0)
            guard r == -ESRCH, ProcFS.exists(pid: pid), access("/proc/\(pid)/task/\(tid)", F_OK) == 0 else { continue }
            // Not in a ptrace-stop yet (seized, interrupt still pending): let it stop, then detach.
            let grace: UInt64 = ProcFS.threadState(pid: pid, tid: tid) == "D" ? 0 : 100_000_000
            let deadline = hs_monotonic_ns() + grace
            var released = false
            repeat {
                switch Attachment.collectStop(tid, signal: signals[tid] ?? 0) {
                case .some(let sig): _ = hs_ptrace_detach(tid, sig); released = true
                case .none: usleep(100)
                }
            } while !released && hs_monotonic_ns() < deadline && access("/proc/\(pid)/task/\(tid)", F_OK) == 0
            if !released && access("/proc/\(pid)/task/\(tid)", F_OK) == 0 { Attachment.leave(tid: tid, signal: signals[tid] ?? 0) }
        }
        detachedNs = hs_monotonic_ns()
        let sig = hs_pending_termination_signal()
        if sig != 0 {
            let msg = "heapscope: interrupted by signal \(sig); target \(pid) detached after a \(pauseMicroseconds) us pause\n"
            _ = msg.withCString { write(2, $0, strlen($0)) }
        }
        hs_block_termination_signals(0)   // a pending SIGINT/SIGTERM is delivered now, after detaching
    }

    /// Threads seized but never stopped (asleep in D state when released), with the signal to
    /// give back. ptrace requests must come from the thread that seized them: callers poll from it.
    nonisolated(unsafe) static var leftovers: [(tid: Int32, signal: Int32)] = []
    static let leftoverLock = PthreadLock()

    /// The next event of a seized thread: a stop is looked at, not consumed (see hs_peek_wait:
    /// the signal it intercepted stays with the thread should heapscope die before detaching);
    /// an exit is consumed (reaped). Returns tid, 0 (nothing yet) or -errno.
    static func nextEvent(_ tid: Int32, _ status: inout Int32) -> Int32 {
        let r = hs_peek_wait(tid, &status)
        if r > 0 && hs_wifstopped(status) == 0 {
            var consumed: Int32 = 0
            _ = hs_waitpid(tid, &consumed, 1)
        }
        return r
    }

    /// A thread seized elsewhere that has not stopped yet: released as the others are.
    static func leave(tid: Int32, signal: Int32) {
        leftoverLock.lock(); leftovers.append((tid, signal)); leftoverLock.unlock()
    }

    /// Detach every leftover thread that has stopped by now (or is gone). Cheap: one waitpid each.
    public static func releaseLeftovers() {
        leftoverLock.lock(); defer { leftoverLock.unlock() }
        leftovers.removeAll { t in
            if access("/proc/\(t.tid)", F_OK) != 0 { return true }
            guard let sig = collectStop(t.tid, signal: t.signal) else { return false }
            _ = hs_ptrace_detach(t.tid, sig)
            return true
        }
    }

    /// One non-blocking wait for a stop of `tid`: the signal to re-deliver when detaching
    /// (`signal`, or the one this stop intercepted), or nil if it has not stopped.
    static func collectStop(_ tid: Int32, signal: Int32) -> Int32? {
        var status: Int32 = 0
        let w = nextEvent(tid, &status)
        if w < 0 { return 0 }   // gone: detaching fails harmlessly
        if w == 0 { return nil }
        if hs_wifstopped(status) == 0 { return 0 }
        let sig = hs_wstopsig(status)
        return hs_wptrace_event(status) == 0 && sig != SIGTRAP && signal == 0 ? sig : signal
    }

    /// True if a termination signal for heapscope is waiting (checked between long copy steps).
    public static func terminationRequested() -> Int32 { hs_pending_termination_signal() }
}

/// A pthread mutex (ProcessAccess does not import Foundation).
final class PthreadLock: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func lock() { pthread_mutex_lock(&m) }
    func unlock() { pthread_mutex_unlock(&m) }
}
