import CShim
import Glibc

/// What stopping a thread does to the system call it is blocked in, and the one case where it can
/// kill the process: a seccomp filter that forbids restart_syscall.
///
/// A ptrace stop interrupts the call the thread sleeps in. When the thread runs again:
/// - most calls are restarted as they were (read, write, futex without a timeout, accept, ...):
///   the program sees nothing;
/// - sleeps with a timeout (nanosleep, clock_nanosleep, a timed futex wait, poll with a timeout)
///   continue through restart_syscall(2), which a seccomp filter sees as a system call of its
///   own; a filter that does not allow it kills the process (SIGSYS) or fails the sleep;
/// - a few calls return EINTR to the program instead, as after SIGSTOP/SIGCONT (signal(7)):
///   epoll_wait, epoll_pwait, epoll_pwait2, rt_sigtimedwait (sigtimedwait, sigwaitinfo), semop,
///   semtimedop, io_getevents, io_pgetevents. Correct programs retry; heapscope says which threads
///   were in one.
public enum SideEffects {
    /// x86_64 system call numbers.
    static let restartSyscall: Int64 = 219
    static let eintrCalls: [Int64: String] = [
        232: "epoll_wait", 281: "epoll_pwait", 441: "epoll_pwait2", 128: "rt_sigtimedwait",
        65: "semop", 220: "semtimedop", 208: "io_getevents", 333: "io_pgetevents",
    ]

    /// A thread's current system call, from /proc/PID/task/TID/syscall ("nr a1 ... a6 sp pc"),
    /// nil when it is running or not in a call.
    public struct Blocked: Sendable {
        public var tid: Int32
        public var nr: Int64
        public var args: [UInt64]
        public var pc: UInt64
    }

    public static func blocked(pid: Int32, tid: Int32) -> Blocked? {
        guard let text = try? ProcFS.readFile("/proc/\(pid)/task/\(tid)/syscall") else { return nil }
        let f = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard f.count >= 9, let nr = Int64(f[0]), nr >= 0 else { return nil }
        func hex(_ s: Substring) -> UInt64 { UInt64(s.hasPrefix("0x") ? s.dropFirst(2) : s, radix: 16) ?? 0 }
        return Blocked(tid: tid, nr: nr, args: f[1...6].map(hex), pc: hex(f[8]))
    }

    /// The name of a sleep that continues through restart_syscall when interrupted, or nil.
    static func restartingSleep(_ b: Blocked) -> String? {
        switch b.nr {
        case 35: return "nanosleep"
        case 230: return "clock_nanosleep"
        case 7: return Int32(truncatingIfNeeded: b.args[2]) >= 0 ? "poll with a timeout" : nil
        case 202:
            // FUTEX_WAIT (0) and FUTEX_WAIT_BITSET (9) with a timeout.
            let op = b.args[1] & 0x7f
            return (op == 0 || op == 9) && b.args[3] != 0 ? "a futex wait with a timeout" : nil
        default: return nil
        }
    }

    /// The result of the check before stopping the target.
    public struct Survey: Sendable {
        /// Threads whose call will return EINTR to the program ("thread T in epoll_wait").
        public var eintr: [String] = []
        /// What was done to find out (a thread stopped to read its seccomp filter), if anything.
        public var notes: [String] = []
    }

    /// Look at every thread before stopping any: if a seccomp filter is in force and a thread sleeps
    /// in a call that restarts through restart_syscall, read the filter (stopping one thread that
    /// is not in such a sleep) and refuse unless it allows restart_syscall. `force` skips the refusal.
    public static func survey(pid: Int32, tids: [Int32], force: Bool) throws(ProcessError) -> Survey {
        var out = Survey()
        var blocked: [Blocked] = []
        for t in tids { if let b = SideEffects.blocked(pid: pid, tid: t) { blocked.append(b) } }
        for b in blocked { if let name = eintrCalls[b.nr] { out.eintr.append("thread \(b.tid) in \(name)") } }
        // Only a thread that sleeps in such a call and has a filter of its own is at risk.
        let sleepers = blocked.compactMap { b in restartingSleep(b).map { (b, $0) } }.filter { seccompMode(pid: pid, tid: $0.0.tid) == 2 }
        guard let (sleeper, sleep) = sleepers.first else { return out }
        if force {
            out.notes.append("--force: thread \(sleeper.tid) sleeps in \(sleep) under a seccomp filter that was not checked")
            return out
        }
        // Its filter is read through a thread that has one too (threads inherit their creator's)
        // but is not in such a sleep.
        let sleeping = Set(blocked.filter { restartingSleep($0) != nil }.map(\.tid))
        guard let reader = tids.first(where: { !sleeping.contains($0) && seccompMode(pid: pid, tid: $0) == 2 }) else {
            throw .seccompRisk(pid: pid, tid: sleeper.tid, call: sleep,
                               why: "every thread under a seccomp filter is in such a sleep, so the filter cannot be read without stopping one (--force to inspect anyway)")
        }
        let verdict: (allowed: Bool, detail: String)
        switch readFilters(pid: pid, tid: reader) {
        case .failure(let e):
            throw .seccompRisk(pid: pid, tid: sleeper.tid, call: sleep,
                               why: "its seccomp filter cannot be read (\(e.description)) to see whether it allows restart_syscall (--force to inspect anyway)")
        case .success(let (filters, stoppedUs)):
            out.notes.append("thread \(reader) was stopped for \(formatMs(stoppedUs)) ms to read its seccomp filter")
            var worst: UInt32 = 0x7fff_0000   // SECCOMP_RET_ALLOW
            var sawError = false
            for f in filters {
                guard let r = evaluate(f, nr: restartSyscall, ip: sleeper.pc, args: sleeper.args) else { sawError = true; continue }
                if priority(r) < priority(worst) { worst = r }
            }
            let action = worst & 0xffff_0000
            verdict = sawError ? (false, "a filter could not be evaluated") :
                (action == 0x7fff_0000 || action == 0x7ffc_0000, actionName(action))
        }
        guard verdict.allowed else {
            throw .seccompRisk(pid: pid, tid: sleeper.tid, call: sleep,
                               why: "the seccomp filter answers restart_syscall with \(verdict.detail), so stopping the process would \(verdict.detail.hasPrefix("kill") || verdict.detail == "trap" ? "kill it" : "make its sleep fail") (--force to inspect anyway)")
        }
        return out
    }

    /// "Seccomp:" of /proc/PID/task/TID/status: 0 none, 1 strict, 2 filter.
    static func seccompMode(pid: Int32, tid: Int32) -> Int {
        guard let text = try? ProcFS.readFile("/proc/\(pid)/task/\(tid)/status") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("Seccomp:") {
            return Int(line.dropFirst(8).trimmingCharacters(in: " \t")) ?? 0
        }
        return 0
    }

    struct FilterError: Error, CustomStringConvertible { var description: String }

    /// Every filter of `tid` (newest first), stopping only that thread, and for how long (µs).
    static func readFilters(pid: Int32, tid: Int32) -> Result<([[UInt64]], UInt64), FilterError> {
        let r = hs_ptrace_seize(tid, 0)
        if r < 0 { return .failure(FilterError(description: "ptrace(PTRACE_SEIZE) of thread \(tid): \(String(cString: strerror(-r)))")) }
        let t0 = hs_monotonic_ns()
        _ = hs_ptrace_interrupt(tid)
        // Wait for its stop; a signal that arrives first is kept and given back at the detach.
        var signal: Int32 = 0, stopped = false
        while !stopped && hs_monotonic_ns() < t0 + 100_000_000 {
            var status: Int32 = 0
            let w = Attachment.nextEvent(tid, &status)
            if w < 0 { return .failure(FilterError(description: "thread \(tid) exited")) }
            if w == 0 { usleep(50); continue }
            if hs_wifstopped(status) == 0 { return .failure(FilterError(description: "thread \(tid) exited")) }
            if hs_wptrace_event(status) == 0 && hs_wstopsig(status) != SIGTRAP { signal = hs_wstopsig(status) }
            stopped = true
        }
        guard stopped else {
            Attachment.leave(tid: tid, signal: signal)
            return .failure(FilterError(description: "thread \(tid) did not stop within 100 ms"))
        }
        var filters: [[UInt64]] = []
        var failure: FilterError? = nil
        for index in 0..<UInt(64) {
            let n = hs_ptrace_seccomp_filter(tid, index, nil, 0)
            if n == -Int(ENOENT) { break }
            if n < 0 {
                let e = Int32(-n)
                failure = FilterError(description: "PTRACE_SECCOMP_GET_FILTER: \(String(cString: strerror(e)))\(e == EACCES || e == EPERM ? " (needs CAP_SYS_ADMIN)" : "")")
                break
            }
            var prog = [UInt64](repeating: 0, count: max(n, 1))
            let m = prog.withUnsafeMutableBytes { hs_ptrace_seccomp_filter(tid, index, $0.baseAddress, UInt(n)) }
            if m != n { failure = FilterError(description: "PTRACE_SECCOMP_GET_FILTER: the filter changed while read"); break }
            filters.append(prog)
        }
        _ = hs_ptrace_detach(tid, signal)
        if let failure { return .failure(failure) }
        return .success((filters, (hs_monotonic_ns() - t0) / 1000))
    }

    /// Lower is stronger: the kernel applies the strongest action of all filters.
    static func priority(_ r: UInt32) -> Int {
        switch r & 0xffff_0000 {
        case 0x8000_0000: return 0   // KILL_PROCESS
        case 0x0000_0000: return 1   // KILL_THREAD
        case 0x0003_0000: return 2   // TRAP
        case 0x0005_0000: return 3   // ERRNO
        case 0x7fc0_0000: return 4   // USER_NOTIF
        case 0x7ff0_0000: return 5   // TRACE
        case 0x7ffc_0000: return 6   // LOG
        default: return 7            // ALLOW
        }
    }

    static func actionName(_ a: UInt32) -> String {
        switch a {
        case 0x8000_0000: return "kill (SECCOMP_RET_KILL_PROCESS)"
        case 0x0000_0000: return "kill (SECCOMP_RET_KILL_THREAD)"
        case 0x0003_0000: return "trap"
        case 0x0005_0000: return "an error (SECCOMP_RET_ERRNO)"
        case 0x7fc0_0000: return "a user notification"
        case 0x7ff0_0000: return "a trace event"
        case 0x7ffc_0000: return "log"
        default: return "allow"
        }
    }

    /// Run a classic BPF seccomp program on seccomp_data {nr, arch x86_64, ip, args}. Returns the
    /// action word, or nil for a program the kernel would not have accepted (bad jump, bad load).
    static func evaluate(_ prog: [UInt64], nr: Int64, ip: UInt64, args: [UInt64]) -> UInt32? {
        var data = [UInt32](repeating: 0, count: 16)   // 64 bytes of struct seccomp_data
        data[0] = UInt32(truncatingIfNeeded: nr)
        data[1] = 0xc000_003e                           // AUDIT_ARCH_X86_64
        data[2] = UInt32(truncatingIfNeeded: ip); data[3] = UInt32(truncatingIfNeeded: ip >> 32)
        for (i, a) in args.prefix(6).enumerated() {
            data[4 + 2 * i] = UInt32(truncatingIfNeeded: a); data[5 + 2 * i] = UInt32(truncatingIfNeeded: a >> 32)
        }
        var A: UInt32 = 0, X: UInt32 = 0
        var mem = [UInt32](repeating: 0, count: 16)
        var pc = 0
        var steps = 0
        while pc < prog.count && steps < 4096 {
            steps += 1
            let ins = prog[pc]
            let code = UInt16(truncatingIfNeeded: ins), jt = Int(UInt8(truncatingIfNeeded: ins >> 16)), jf = Int(UInt8(truncatingIfNeeded: ins >> 24))
            let k = UInt32(truncatingIfNeeded: ins >> 32)
            pc += 1
            switch code & 0x07 {
            case 0x00, 0x01:   // BPF_LD, BPF_LDX
                var v: UInt32
                switch code & 0xe0 {
                case 0x20: guard k % 4 == 0, k < 64 else { return nil }; v = data[Int(k / 4)]   // BPF_ABS (W)
                case 0x00: v = k                                                              // BPF_IMM
                case 0x60: guard k < 16 else { return nil }; v = mem[Int(k)]                   // BPF_MEM
                case 0x80: v = 64                                                             // BPF_LEN
                default: return nil
                }
                if code & 0x07 == 0 { A = v } else { X = v }
            case 0x02: guard k < 16 else { return nil }; mem[Int(k)] = A   // BPF_ST
            case 0x03: guard k < 16 else { return nil }; mem[Int(k)] = X   // BPF_STX
            case 0x04:   // BPF_ALU
                let s = code & 0x08 != 0 ? X : k
                switch code & 0xf0 {
                case 0x00: A = A &+ s
                case 0x10: A = A &- s
                case 0x20: A = A &* s
                case 0x30: guard s != 0 else { return nil }; A = A / s
                case 0x40: A = A | s
                case 0x50: A = A & s
                case 0x60: A = s < 32 ? A << s : 0
                case 0x70: A = s < 32 ? A >> s : 0
                case 0x80: A = 0 &- A
                case 0x90: guard s != 0 else { return nil }; A = A % s
                case 0xa0: A = A ^ s
                default: return nil
                }
            case 0x05:   // BPF_JMP
                let s = code & 0x08 != 0 ? X : k
                let taken: Bool
                switch code & 0xf0 {
                case 0x00: pc += Int(k); continue    // BPF_JA
                case 0x10: taken = A == s
                case 0x20: taken = A > s
                case 0x30: taken = A >= s
                case 0x40: taken = A & s != 0
                default: return nil
                }
                pc += taken ? jt : jf
            case 0x06: return code & 0x18 == 0x10 ? A : k   // BPF_RET (A or K)
            case 0x07: if code & 0xf8 == 0 { X = A } else { A = X }   // BPF_MISC: TAX, TXA
            default: return nil
            }
        }
        return nil
    }
}
