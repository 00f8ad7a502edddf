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
    /// Longest time to wait for all threads to stop.
    public static let stopTimeoutNs: UInt64 = 5_000_000_000

    public var pauseMicroseconds: UInt64 { (detachedNs > firstStopNs ? detachedNs - firstStopNs : 0) / 1000 }

    /// Attach to and stop every thread of `pid`. On any failure everything attached so far is detached.
    public init(pid: Int32) throws(ProcessError) {
        self.pid = pid
        guard ProcFS.exists(pid: pid) else { throw .noSuchProcess(pid: pid) }
        hs_block_termination_signals(1)
        do {
            try stopAll()
        } catch {
            detach()
            throw error
        }
    }

    deinit { detach() }

    private func seize(_ tid: Int32) throws(ProcessError) -> Bool {
        let r = hs_ptrace_seize(tid, 1)
        if r == -ESRCH { return false }     // the thread exited meanwhile
        if r == -EPERM {
            if tid == pid || seized.isEmpty { throw .permissionDenied(pid: pid, reason: explainPermission(pid: pid)) }
            return false
        }
        if r < 0 { throw .system(call: "ptrace(PTRACE_SEIZE)", subject: "tid \(tid)", errno: -r) }
        let i = hs_ptrace_interrupt(tid)
        if firstStopNs == 0 { firstStopNs = hs_monotonic_ns() }
        if i < 0 && i != -ESRCH { throw .system(call: "ptrace(PTRACE_INTERRUPT)", subject: "tid \(tid)", errno: -i) }
        seized[tid] = false
        return true
    }

    private func stopAll() throws(ProcessError) {
        // Seize every listed thread; re-list until no new thread appears.
        var rounds = 0
        while true {
            let tids = try ProcFS.threadIDs(pid: pid)
            if tids.isEmpty { throw .noSuchProcess(pid: pid) }
            var added = false
            for t in tids where seized[t] == nil {
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

    /// Collect one stop from every seized thread (polling, so a thread stuck in D state cannot hang us).
    private func waitForStops() throws(ProcessError) {
        let deadline = hs_monotonic_ns() + Attachment.stopTimeoutNs
        var sleepUs: UInt32 = 0
        while let tid = seized.first(where: { !$0.value })?.key {
            var status: Int32 = 0
            let r = hs_waitpid(tid, &status, 1)
            if r == -ECHILD { seized[tid] = nil; continue }      // gone (already reaped)
            if r < 0 { throw .system(call: "waitpid", subject: "tid \(tid)", errno: -r) }
            if r == 0 {
                if hs_monotonic_ns() > deadline {
                    throw .threadWouldNotStop(pid: pid, tid: tid, state: ProcFS.threadState(pid: pid, tid: tid))
                }
                if sleepUs > 0 { usleep(sleepUs) }
                sleepUs = min(max(sleepUs * 2, 10), 2000)
                continue
            }
            sleepUs = 0
            if hs_wifexited(status) != 0 || hs_wifsignaled(status) != 0 {
                seized[tid] = nil
                if seized.isEmpty || !ProcFS.exists(pid: pid) { throw .targetExited(pid: pid, during: "while being attached") }
                continue
            }
            guard hs_wifstopped(status) != 0 else { continue }
            let event = hs_wptrace_event(status)
            let sig = hs_wstopsig(status)
            switch event {
            case Int32(HS_PTRACE_EVENT_CLONE):
                var msg: UInt = 0
                if hs_ptrace_geteventmsg(tid, &msg) == 0, msg > 0, seized[Int32(msg)] == nil {
                    seized[Int32(msg)] = false   // auto-attached; it reports its own stop
                }
                seized[tid] = true
            case Int32(HS_PTRACE_EVENT_STOP), Int32(HS_PTRACE_EVENT_EXIT):
                seized[tid] = true
            case 0:
                // Signal-delivery-stop: the signal was meant for the target. Keep it to re-deliver.
                if sig != SIGTRAP || signals[tid] == nil { signals[tid] = sig }
                seized[tid] = true
            default:
                seized[tid] = true
            }
        }
    }

    /// Detach from every thread, re-delivering pending signals. Safe to call more than once.
    public func detach() {
        if detached { return }
        detached = true
        for tid in seized.keys.sorted() {
            var r = hs_ptrace_detach(tid, signals[tid] ?? 0)
            if r == -ESRCH && ProcFS.exists(pid: pid) && access("/proc/\(pid)/task/\(tid)", F_OK) == 0 {
                // Not in a ptrace-stop yet (seized, interrupt still pending): stop it, then detach.
                var status: Int32 = 0
                let deadline = hs_monotonic_ns() + 1_000_000_000
                while hs_monotonic_ns() < deadline {
                    let w = hs_waitpid(tid, &status, 1)
                    if w != 0 { break }
                    usleep(100)
                }
                r = hs_ptrace_detach(tid, signals[tid] ?? 0)
            }
        }
        detachedNs = hs_monotonic_ns()
        let sig = hs_pending_termination_signal()
        if sig != 0 {
            let msg = "heapscope: interrupted by signal \(sig); target \(pid) detached after a \(pauseMicroseconds) us pause\n"
            _ = msg.withCString { write(2, $0, strlen($0)) }
        }
        hs_block_termination_signals(0)   // a pending SIGINT/SIGTERM is delivered now, after detaching
    }

    /// True if a termination signal for heapscope is waiting (checked between long copy steps).
    public static func terminationRequested() -> Int32 { hs_pending_termination_signal() }
}
