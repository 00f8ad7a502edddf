import Glibc

/// Every way talking to the target process can fail, with a message meant for the person on call.
public enum ProcessError: Error, CustomStringConvertible, Sendable {
    case noSuchProcess(pid: Int32)
    /// The pid names something that is not a user process heapscope can inspect: a kernel
    /// thread, or heapscope itself.
    case notAProcess(pid: Int32, what: String)
    case permissionDenied(pid: Int32, reason: String)
    case targetExited(pid: Int32, during: String)
    /// A thread did not stop in time; the others (`others` of them) were stopped for
    /// `stoppedMicroseconds` and released.
    case threadWouldNotStop(pid: Int32, tid: Int32, state: String, stoppedMicroseconds: UInt64, others: Int)
    /// Stopping the target for as long as the work needed would exceed the stop budget (--max-stop).
    case stopBudgetExceeded(pid: Int32, stoppedMicroseconds: UInt64, budgetMicroseconds: UInt64, doing: String)
    /// The copy would need more memory than heapscope may use (checked before stopping the target).
    case notEnoughMemory(pid: Int32, neededBytes: UInt64, availableBytes: UInt64, source: String)
    /// Stopping the target could kill it: a thread sleeps in a call that resumes through
    /// restart_syscall, which its seccomp filter does not (or may not) allow.
    case seccompRisk(pid: Int32, tid: Int32, call: String, why: String)
    /// A thread of the target is traced by another program, so heapscope cannot stop it.
    case tracedByOther(pid: Int32, tid: Int32, tracer: Int32, tracerName: String)
    case system(call: String, subject: String, errno: Int32)
    case interrupted(signal: Int32)

    public var description: String {
        switch self {
        case .noSuchProcess(let pid): return "no such process: \(pid)"
        case .notAProcess(let pid, let what): return "pid \(pid) is \(what): there is no user-space heap to inspect"
        case .permissionDenied(let pid, let reason): return "permission denied attaching to \(pid): \(reason)"
        case .targetExited(let pid, let during): return "process \(pid) exited \(during)"
        case .threadWouldNotStop(let pid, let tid, let state, let us, let others):
            return "pid \(pid) thread \(tid) in \(state) did not stop; stopped \(others) other thread\(others == 1 ? "" : "s") for \(formatMs(us)) ms, then released them (target untouched; that thread is released as soon as it stops; try again later)"
        case .stopBudgetExceeded(let pid, let us, let budget, let doing):
            return "\(doing) would keep pid \(pid) stopped for longer than --max-stop \(formatMs(budget)) ms; it was released after \(formatMs(us)) ms (target untouched; a larger --max-stop allows more)"
        case .notEnoughMemory(let pid, let needed, let available, let source):
            return "copying pid \(pid)'s memory needs \(needed >> 20) MiB, more than the \(available >> 20) MiB available (\(source)); the target was not stopped"
        case .seccompRisk(let pid, let tid, let call, let why):
            return "not stopping pid \(pid): thread \(tid) sleeps in \(call), which resumes through restart_syscall after any stop, and \(why)"
        case .tracedByOther(let pid, let tid, let tracer, let name):
            return "thread \(tid) of process \(pid) is traced by process \(tracer) (\(name)); heapscope cannot stop a thread another tracer holds: detach that tracer first"
        case .system(let call, let subject, let e):
            return "\(call)(\(subject)) failed: \(String(cString: strerror(e)))"
        case .interrupted(let sig): return "interrupted by signal \(sig); target detached"
        }
    }
}

/// Milliseconds with one decimal, from microseconds.
func formatMs(_ us: UInt64) -> String {
    let tenths = (us + 50) / 100
    return "\(tenths / 10).\(tenths % 10)"
}

/// Explains an EPERM from ptrace or process_vm_readv: capabilities, Yama, another tracer.
public func explainPermission(pid: Int32) -> String {
    var reasons: [String] = []
    if let tracer = ProcFS.tracer(pid: pid, tid: pid) {
        reasons.append("it is already traced by process \(tracer.pid) (\(tracer.name)); only one tracer may attach at a time")
    }
    let euid = geteuid()
    let hasCap = ProcFS.selfHasCapability(19) // CAP_SYS_PTRACE
    if !hasCap {
        if let st = try? ProcFS.status(pid: pid), let uidLine = st["Uid"],
           let targetUid = uidLine.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap({ UInt32($0) }),
           targetUid != euid {
            reasons.append("it belongs to uid \(targetUid) and heapscope runs as uid \(euid) without CAP_SYS_PTRACE (run as root, or grant the capabilities: setcap cap_sys_ptrace,cap_dac_read_search+ep heapscope; CAP_SYS_PTRACE alone works too, but without CAP_DAC_READ_SEARCH /proc/PID/pagemap is unreadable and mappings are copied whole)")
        }
        if let scope = ProcFS.yamaScope() {
            switch scope {
            case 1: reasons.append("Yama ptrace_scope is 1 (only a parent may trace its children): run as root, grant CAP_SYS_PTRACE, or set /proc/sys/kernel/yama/ptrace_scope to 0")
            case 2: reasons.append("Yama ptrace_scope is 2 (admin only): CAP_SYS_PTRACE is required")
            case 3: reasons.append("Yama ptrace_scope is 3: ptrace attach is disabled on this system until reboot")
            default: break
            }
        }
    } else if let scope = ProcFS.yamaScope(), scope == 3 {
        reasons.append("Yama ptrace_scope is 3: ptrace attach is disabled on this system until reboot")
    }
    if reasons.isEmpty {
        reasons.append("the kernel refused (the target may be setuid/undumpable, or a security module such as SELinux/AppArmor denies ptrace)")
    }
    return reasons.joined(separator: "; ")
}
