import CLibdw
import Glibc

/// One frame of an unwound stack: its program counter and stack pointer, innermost first.
public struct StackFrame: Sendable {
    public var pc: UInt64
    public var sp: UInt64
    /// False for frames of callers: their pc is a return address (look up pc - 1).
    public var isActivation: Bool
    /// DWARF registers 0...16 (rax rdx rcx rbx rsi rdi rbp rsp r8-r15 rip) where the unwinder
    /// knows them: all in the innermost frame, the callee-saved ones in callers.
    public var registers: [UInt64?] = []
}

/// The state libdwfl's unwinder reads through the callbacks: registers and memory copied while
/// the process was stopped. Nothing is read from the process itself.
private final class UnwindState {
    let threads: [(tid: Int32, regs: [UInt64])]
    let read: (UInt64) -> UInt64?
    var next = 0
    var frames: [StackFrame] = []
    init(threads: [(tid: Int32, regs: [UInt64])], read: @escaping (UInt64) -> UInt64?) { self.threads = threads; self.read = read }
}

private func state(_ arg: UnsafeMutableRawPointer?) -> UnwindState { Unmanaged<UnwindState>.fromOpaque(arg!).takeUnretainedValue() }

nonisolated(unsafe) private let unwindCallbacks: UnsafeMutablePointer<Dwfl_Thread_Callbacks> = {
    let cb = UnsafeMutablePointer<Dwfl_Thread_Callbacks>.allocate(capacity: 1)
    cb.initialize(to: Dwfl_Thread_Callbacks())
    cb.pointee.next_thread = { _, arg, threadArg in
        let s = state(arg)
        guard s.next < s.threads.count else { return 0 }
        s.next += 1
        threadArg?.pointee = UnsafeMutableRawPointer(bitPattern: s.next)   // index + 1
        return s.threads[s.next - 1].tid
    }
    cb.pointee.get_thread = { _, tid, arg, threadArg in
        let s = state(arg)
        guard let i = s.threads.firstIndex(where: { $0.tid == tid }) else { return false }
        threadArg?.pointee = UnsafeMutableRawPointer(bitPattern: i + 1)
        return true
    }
    cb.pointee.memory_read = { _, addr, result, arg in
        guard let w = state(arg).read(addr) else { return false }
        result?.pointee = w
        return true
    }
    cb.pointee.set_initial_registers = { thread, threadArg in
        guard let thread else { return false }
        let i = Int(bitPattern: threadArg) - 1
        let s = UnwindSession.current!
        guard i >= 0, i < s.threads.count else { return false }
        let u = s.threads[i].regs   // user_regs_struct order
        guard u.count >= 20 else { return false }
        // DWARF x86_64: rax rdx rcx rbx rsi rdi rbp rsp r8..r15 rip
        var dw: [Dwarf_Word] = [u[10], u[12], u[11], u[5], u[13], u[14], u[4], u[19], u[9], u[8], u[7], u[6], u[3], u[2], u[1], u[0], u[16]]
        return dwfl_thread_state_registers(thread, 0, 17, &dw)
    }
    return cb
}()

/// The unwind state of the session being unwound (sessions are used one at a time, under the lock).
private enum UnwindSession { nonisolated(unsafe) static var current: UnwindState? }

extension SymbolSession {
    /// Unwind the stacks of `threads` (registers in the kernel's `user_regs_struct` order) with
    /// the CFI of the session's modules, reading stack memory through `read` (a copy: the process
    /// is not touched). Frames innermost first; a thread that cannot be unwound has what was found.
    /// libdwfl takes one set of threads per session: later calls give the first call's stacks.
    public func unwind(threads: [(tid: Int32, regs: [UInt64])], read: @escaping (UInt64) -> UInt64?) -> [Int32: [StackFrame]] {
        SymbolSession.lock.locked {
            if let done = unwound { return done }
            let s = UnwindState(threads: threads, read: read)
            UnwindSession.current = s
            defer { UnwindSession.current = nil }
            let arg = Unmanaged.passRetained(s).toOpaque()
            guard dwfl_attach_state(dwfl, nil, pid, unwindCallbacks, arg) else {
                Unmanaged<UnwindState>.fromOpaque(arg).release()
                return [:]
            }
            var out: [Int32: [StackFrame]] = [:]
            for t in threads {
                s.frames = []
                _ = dwfl_getthread_frames(dwfl, t.tid, { frame, arg in
                    guard let frame else { return Int32(DWARF_CB_ABORT) }
                    let s = state(arg)
                    var pc: Dwarf_Addr = 0, sp: Dwarf_Word = 0
                    var activation = false
                    guard dwfl_frame_pc(frame, &pc, &activation) else { return Int32(DWARF_CB_ABORT) }
                    if dwfl_frame_reg(frame, 7, &sp) != 0 { sp = 0 }
                    var regs = [UInt64?](repeating: nil, count: 17)
                    for r in 0..<17 {
                        var v: Dwarf_Word = 0
                        if dwfl_frame_reg(frame, UInt32(r), &v) == 0 { regs[r] = v }
                    }
                    s.frames.append(StackFrame(pc: pc, sp: sp, isActivation: activation, registers: regs))
                    return s.frames.count < 1024 ? Int32(DWARF_CB_OK) : Int32(DWARF_CB_ABORT)
                }, arg)
                out[t.tid] = s.frames
            }
            // (the state stays referenced by the Dwfl until dwfl_end; released with the session)
            unwindStates.append(arg)
            unwound = out
            return out
        }
    }
}
