import Allocator
import Glibc
import GlibcMalloc
import HeapModel
import ProcessAccess
import Snapshot
import Symbols

/// Options for one inspection.
public struct InspectOptions: Sendable {
    /// Use separate debug files (build-id, debuglink). Off: only the signature methods find malloc's
    /// state. Also switched off by the environment variable HEAPSCOPE_NO_DEBUGINFO=1.
    public var useDebugInfo: Bool
    /// How many times to stop the target when the heap is caught mid-update.
    public var maxAttempts: Int
    /// The longest the target may be stopped in all, over every attempt (--max-stop).
    public var maxStopMicroseconds: UInt64
    /// Stop the target even when its seccomp filter could kill it for that (--force).
    public var force = false
    /// Copy shared writable mappings (rw-s) too, as roots of leak checks and typing (--shared-roots).
    public var sharedRoots = false
    /// Told the phase as each begins ("stopping the target to copy 120 MiB", "walking the heap"…),
    /// for a progress line on a terminal.
    public var progress: (@Sendable (String) -> Void)? = nil
    /// Account for the process's resident memory (RSS, PSS, swap) by what holds it: reads
    /// /proc/PID/smaps, pagemap and the modules' data before the stop (live processes only).
    public var accountMemory = false
    /// Copy into an unnamed file in this directory (--spill DIR) instead of anonymous memory: for
    /// heaps bigger than the memory heapscope may use (live processes; the file goes when heapscope exits).
    public var spillDirectory: String? = nil
    public init(useDebugInfo: Bool = Environment.debugInfoEnabled, maxAttempts: Int = 5,
                maxStopMicroseconds: UInt64 = Attachment.defaultBudgetNs / 1000) {
        self.useDebugInfo = useDebugInfo
        self.maxAttempts = maxAttempts
        self.maxStopMicroseconds = maxStopMicroseconds
    }
}


/// Every failure of an inspection, with the exit code the CLI documents.
public enum InspectError: Error, CustomStringConvertible, Sendable {
    case process(ProcessError)
    /// The allocator (or its absence) as the walker found it.
    case allocator(AllocatorError)
    case symbols(String)
    /// A core file that cannot be read.
    case core(CoreFile.CoreError)
    /// A snapshot file that cannot be read.
    case snapshotFile(SnapshotError)
    /// A command that needs a process image, given a snapshot file.
    case needsImage(String)

    public var description: String {
        switch self {
        case .core(let e): return e.description
        case .snapshotFile(let e): return e.description
        case .needsImage(let command): return "\(command) needs a live process (a PID) or a core file, not a snapshot file"
        case .process(let e): return e.description
        case .allocator(let e): return e.description
        case .symbols(let s): return s
        }
    }
    /// Exit codes (README "Exit codes").
    public var exitCode: Int32 {
        switch self {
        case .process(.noSuchProcess), .process(.notAProcess): return ExitStatus.noSuchProcess.rawValue
        case .process(.permissionDenied), .process(.tracedByOther), .process(.seccompRisk): return ExitStatus.permissionDenied.rawValue
        case .process(.targetExited): return ExitStatus.targetExited.rawValue
        case .process(.threadWouldNotStop), .process(.stopBudgetExceeded): return ExitStatus.stopBudget.rawValue
        case .process(.interrupted(let sig)): return ExitStatus.signal(sig)
        case .allocator(.notThisAllocator), .allocator(.unsupportedVersion): return ExitStatus.unsupported.rawValue
        case .allocator(.notInitialised), .allocator(.stateNotFound): return ExitStatus.mallocNotFound.rawValue
        case .core, .snapshotFile: return ExitStatus.badInputFile.rawValue
        case .needsImage: return ExitStatus.usage.rawValue
        case .process, .symbols: return ExitStatus.otherError.rawValue
        }
    }
}

/// What to inspect: a live process, a core file of one, or a snapshot file heapscope wrote.
public enum InspectTarget: Sendable, Equatable {
    case process(Int32)
    case core(path: String)
    case snapshot(path: String)
    /// Whether `path` is an ELF core file (by its contents).
    public static func isCoreFile(_ path: String) -> Bool { CoreFile.isCore(path: path) }

    /// The target a command-line argument names: digits are a process id (a bad one fails with
    /// exit 3, as a process that does not exist), a file is a core file when its contents say
    /// so and a snapshot file otherwise.
    public init(argument a: String) throws(Failure) {
        if !a.isEmpty && a.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            guard let p = Int32(a), p > 0 else { throw Failure(.noSuchProcess, "no such process: \(a)") }
            self = .process(p)
        } else if let p = Int32(a) {
            throw Failure(.usage, "pid must be a positive process id, got \(p)")
        } else {
            self = CoreFile.isCore(path: a) ? .core(path: a) : .snapshot(path: a)
        }
    }
    /// The snapshot file's path, when the target is one.
    public var snapshotPath: String? { if case .snapshot(let p) = self { return p }; return nil }
}


public enum Inspector {
    /// Every name `--state` accepts: each allocator's kinds of chunk, then the shared states.
    public static var chunkStateNames: [String] {
        var names = GlibcKinds.table().kinds.map(\.name)
        for s in ChunkState.allCases where !names.contains(s.name) { names.append(s.name) }
        return names
    }

    /// Attach to `pid`, copy its heap while it is stopped, detach, and walk the copy.
    public static func inspect(pid: Int32, options: InspectOptions = InspectOptions()) throws(InspectError) -> HeapReport {
        try inspect(.process(pid), options: options)
    }
    /// `inspect` of a live process or a core file.
    public static func inspect(_ target: InspectTarget, options: InspectOptions = InspectOptions()) throws(InspectError) -> HeapReport {
        if case .snapshot(let path) = target { return try readSnapshot(path).report }
        return try inspectCapturing(target, options: options, writable: false).report
    }

    /// The process image of a live process (stopped once, as briefly as the copy allows) or a
    /// core file: everything the analyses take. `writable`: copy every other writable mapping
    /// too (stacks, module data, anonymous memory: the roots of leak checks and typing).
    public static func image(_ target: InspectTarget, options: InspectOptions = InspectOptions(), writable: Bool) throws(InspectError) -> ProcessImage {
        try inspectCapturing(target, options: options, writable: writable)
    }

    static func inspectCapturing(_ target: InspectTarget, options: InspectOptions, writable: Bool) throws(InspectError) -> ProcessImage {
        switch target {
        case .process(let pid): return try inspectCapturing(pid: pid, options: options, writable: writable)
        case .core(let path): return try inspectCore(path: path, options: options, writable: writable)
        case .snapshot: throw .needsImage("this")
        }
    }

    /// The same capture from a core file: nothing is stopped; the core's threads, registers and
    /// memory stand for the stopped process's.
    static func inspectCore(path: String, options: InspectOptions, writable: Bool) throws(InspectError) -> ProcessImage {
        let core: CoreFile
        do { core = try CoreFile(path: path) } catch { throw .core(error) }
        let (target, symbols) = try prepare(source: .core(core), options: options)
        let capture = target.newCapture()
        let pages = LivePages(remote: target.remote)
        capture.useResidency(pages)
        do { try capture.capture(threads: core.threads, pool: nil, budget: nil, mmappedFrom: writable ? nil : pages) } catch { throw .allocator(error) }
        var maps: [Mapping] = [], writableImage = MemoryImage(), account: CopyAccount? = nil
        if writable {
            let c = CopyPlan.copy(remote: target.remote, pages: pages, skipping: capture.image, threads: core.threads,
                                  sharedRoots: options.sharedRoots, pool: nil, budget: nil)
            (maps, writableImage, account) = (c.maps, c.image, c.account)
        }
        let t1 = nowNs()
        if writable { capture.scanMmapped(from: MemoryImage.merged(capture.image, writableImage)) }
        var walk = capture.walk()
        if !capture.unsettled.isEmpty {
            walk.warnings.insert(.init(.unsettled, nil, "the core was written while the heap was changing (\(capture.unsettled.joined(separator: "; "))); results may be inconsistent"), at: 0)
        }
        if core.truncatedBytes > 0 {
            walk.warnings.insert(.init(.unreadable, nil, "the core file is cut short: \(core.truncatedBytes) bytes of the memory its headers describe are not in it (a size limit or a full disk when it was written?); what is missing reads as unknown"), at: 0)
        }
        var report = HeapReport(pid: core.pid, pauseMicroseconds: 0, attempts: 0, allocator: target.allocatorName,
                                allocatorVersion: target.version, discovery: capture.discovery,
                                heap: walk, copiedBytes: capture.image.totalBytes + writableImage.totalBytes,
                                analysisMicroseconds: (nowNs() - t1) / 1000)
        report.coreFile = path
        report.beyondHeap = account
        var ids: [(path: String, id: String)] = []
        for f in core.files where f.fileOffset == 0 && !ids.contains(where: { $0.path == f.path }) {
            if let id = core.recordedBuildID(f.path) { ids.append((f.path, ELFNotes.hex(id))) }
        }
        let facts = ProcessFacts(pid: core.pid, exe: core.executable ?? "", startTime: nil, buildIDs: ids)
        return ProcessImage(report: report, target: target, capture: capture, accessPid: core.pid, maps: maps, writable: writableImage,
                        facts: facts, symbols: symbols)
    }

    /// `inspect`, keeping what was copied; with `writable`, also every other writable mapping
    /// (stacks, module data, anonymous memory: the roots of a leak check), in the same pause.
    static func inspectCapturing(pid userPid: Int32, options: InspectOptions, writable: Bool) throws(InspectError) -> ProcessImage {
        if let what = ProcFS.notAProcess(userPid) { throw .process(.notAProcess(pid: userPid, what: what)) }
        // Memory and /proc are reached through a live thread when the leader has exited.
        let pid = ProcFS.accessPid(userPid)
        // A process caught in execve() refuses ptrace and /proc reads for a moment: try again
        // briefly before calling it a permission problem.
        var denied = 0
        while true {
            do {
                var c = try inspectOnce(pid: pid, options: options, writable: writable)
                c.report.pid = userPid
                c.facts.pid = userPid
                c.accessPid = pid
                return c
            } catch {
                if case .process(.noSuchProcess) = error { throw error }
                if case .process(.targetExited) = error { throw error }
                if ProcFS.hasExited(pid: pid) {
                    throw .process(ProcFS.exists(pid: pid) ? .targetExited(pid: pid, during: "during inspection") : .noSuchProcess(pid: pid))
                }
                guard case .process(.permissionDenied) = error, denied < 3, ProcFS.exists(pid: pid) else { throw error }
                denied += 1
                usleep(20_000)
            }
        }
    }

    static func inspectOnce(pid: Int32, options: InspectOptions, writable: Bool) throws(InspectError) -> ProcessImage {
        let before = PhaseTrace()
        let (target, symbols) = try prepare(source: .live(pid: pid), options: options)
        before.mark("prepare: maps, allocator, symbols")
        let facts = ProcessFacts.read(pid: pid, access: pid, maps: target.maps)
        let budgetNs = options.maxStopMicroseconds * 1000
        var attempt = 0
        var capture: any AllocatorCapture
        var pauses: [UInt64] = []
        var maps: [Mapping] = []
        var writableImage = MemoryImage()
        var account: CopyAccount? = nil
        var stoppedNs: UInt64 = 0
        var faultMicroseconds: UInt64 = 0
        // What stopping does to the calls the threads sleep in; refused where it could kill.
        let survey: SideEffects.Survey
        do { survey = try SideEffects.survey(pid: pid, tids: try ProcFS.threadIDs(pid: pid), force: options.force) } catch {
            throw .process(error)
        }
        // Copy buffers are sized before the target stops, within the memory heapscope may use,
        // and faulted in before each stop.
        var planned = UInt64(target.estimatedCopyBytes)
        if writable { planned += CopyPlan.estimate(pid: pid, maps: target.maps.filter { !target.isHeapMapping($0) }, sharedRoots: options.sharedRoots) }
        if let dir = options.spillDirectory { try MemoryLimit.checkSpace(needed: planned, directory: dir, pid: pid) }
        else { try MemoryLimit.check(needed: planned, pid: pid) }
        var cutByBudget = false
        // The first attempt's buffers are faulted in on another thread while the reads below run.
        let poolBytes = Int(planned), spill = options.spillDirectory
        var firstPool: BackgroundWork<BufferPool>? = BackgroundWork { BufferPool(bytes: poolBytes, spill: spill) }
        // Page-level reads (pagemap open, its buffer in place) made before the stop, for every attempt.
        let pages = LivePages(remote: target.remote)
        // Where the resident memory is, read before the stop (and only then).
        before.mark("facts, side effects, copy estimate")
        let residency = options.accountMemory ? ResidencyRead.read(pid: pid, remote: target.remote) : nil
        if residency != nil { before.mark("residency read") }
        options.progress?("stopping the target to copy about \(max(1, planned >> 20)) MiB")
        while true {
            attempt += 1
            capture = target.newCapture()
            let pool = firstPool?.wait() ?? BufferPool(bytes: Int(planned), spill: options.spillDirectory)
            firstPool = nil
            if pool.spillError != 0 { throw .process(.system(call: "open", subject: "an unnamed file in --spill \(options.spillDirectory ?? "")", errno: pool.spillError)) }
            faultMicroseconds += pool.faultMicroseconds
            let att: Attachment
            do { att = try Attachment(pid: pid, budgetNs: budgetNs > stoppedNs ? budgetNs - stoppedNs : 0) } catch {
                if case .threadWouldNotStop(let p, let t, let st, let us, let others) = error, !pauses.isEmpty {
                    // Earlier attempts stopped it too: say the whole time.
                    throw .process(.threadWouldNotStop(pid: p, tid: t, state: st, stoppedMicroseconds: us + stoppedNs / 1000, others: others))
                }
                throw .process(error)
            }
            let budget = StopBudget(deadlineNs: att.deadlineNs)
            capture.useResidency(pages)
            do {
                try capture.capture(threads: att.threads, pool: pool, budget: budget, mmappedFrom: writable ? nil : pages)
            } catch {
                att.detach()
                throw .allocator(error)
            }
            if writable && !budget.exceeded {
                let c = CopyPlan.copy(remote: target.remote, pages: pages, skipping: capture.image, threads: att.threads, sharedRoots: options.sharedRoots,
                                      pool: pool, budget: budget)
                (maps, writableImage, account) = (c.maps, c.image, c.account)
            }
            att.detach()
            pool.trimUnused()
            pauses.append(att.pauseMicroseconds)
            stoppedNs += att.pauseMicroseconds * 1000
            let sig = Attachment.terminationRequested()   // only when the caller handles these signals
            if sig != 0 { throw .process(.interrupted(signal: sig)) }
            if budget.exceeded {
                let mib = (capture.image.totalBytes + writableImage.totalBytes) >> 20
                throw .process(.stopBudgetExceeded(pid: pid, stoppedMicroseconds: stoppedNs / 1000, budgetMicroseconds: options.maxStopMicroseconds,
                                                   doing: "copying its memory (\(mib) MiB copied so far\(attempt > 1 ? ", attempt \(attempt)" : ""))"))
            }
            if capture.unsettled.isEmpty || attempt >= options.maxAttempts { break }
            // Another attempt only if one as long as the longest so far still fits in the budget.
            if stoppedNs + 1000 * (pauses.max() ?? 0) * 5 / 4 > budgetNs {
                cutByBudget = true
                break
            }
            usleep(UInt32(1000 << min(attempt - 1, 4)))   // back off: let the thread leave malloc
            if !ProcFS.exists(pid: pid) { throw .process(.targetExited(pid: pid, during: "between attempts")) }
        }
        let pause = stoppedNs / 1000
        options.progress?("detached after \(pause / 1000) ms; walking the heap (\((capture.image.totalBytes + writableImage.totalBytes) >> 20) MiB copied)")
        let t1 = nowNs()
        // The writable copy holds every resident page of the anonymous mappings: mmapped chunks
        // are found there, after the detach.
        let trace = PhaseTrace()
        if writable { capture.scanMmapped(from: MemoryImage.merged(capture.image, writableImage)) }
        var walk = capture.walk()
        trace.mark("walk")
        if !capture.unsettled.isEmpty {
            let why = cutByBudget ? "; another attempt would exceed --max-stop" : ""
            walk.warnings.insert(.init(.unsettled, nil, "heap still changing after \(attempt) attempt\(attempt == 1 ? "" : "s") (\(capture.unsettled.joined(separator: "; "))\(why)); results may be inconsistent"), at: 0)
        }
        var report = HeapReport(pid: pid, pauseMicroseconds: pause, attempts: attempt, allocator: target.allocatorName,
                                allocatorVersion: target.version, discovery: capture.discovery,
                                heap: walk, copiedBytes: capture.image.totalBytes + writableImage.totalBytes,
                                analysisMicroseconds: (nowNs() - t1) / 1000)
        report.attemptPauses = pauses
        report.bufferFaultMicroseconds = faultMicroseconds
        report.spilledTo = options.spillDirectory
        report.stopBudgetMicroseconds = options.maxStopMicroseconds
        report.beyondHeap = account
        report.sideEffects = survey.notes + survey.eintr.map { "\($0) returned EINTR to the program when stopped (as after SIGSTOP and SIGCONT)" }
        if let residency {
            report.memory = MemoryAccounting.build(residency, walk: walk,
                                                   threads: capture.threads, symbols: symbols, heapImage: capture.image)
            trace.mark("memory account")
        }
        return ProcessImage(report: report, target: target, capture: capture, maps: maps, writable: writableImage, facts: facts, symbols: symbols)
    }

    /// Everything that can be learned without stopping the target: maps, allocator, version, symbols.
    public static func prepare(pid: Int32, options: InspectOptions) throws(InspectError) -> any AllocatorTarget {
        try prepare(source: .live(pid: pid), options: options).target
    }

    /// `prepare` for a live process or a core file; also the symbol session it opened (kept for
    /// every later analysis of the same image: nothing opens another on the pid after the detach).
    static func prepare(source: Source, options: InspectOptions) throws(InspectError) -> (target: any AllocatorTarget, symbols: SymbolSession) {
        options.progress?("reading mappings and symbols")
        let pid = source.pid
        let maps = try source.maps()
        if maps.isEmpty { throw .process(.targetExited(pid: pid, during: "before it could be read (no mappings: a zombie or kernel thread)")) }
        // Another allocator or libc: told from the mappings alone.
        if let refusal = GlibcPrepare.refusal(maps: maps) { throw .allocator(refusal.allocatorError) }
        // A 64-bit process only (its executable's ELF class), told before anything else is read.
        let exe = source.executable
        if let exeMap = maps.first(where: { $0.offset == 0 && $0.path == exe }),
           ProcFS.elfClass(source.filePath(exeMap)) == 1 {
            throw .allocator(.notThisAllocator("target does not use glibc malloc: it is a 32-bit process (ELFCLASS32); heapscope reads 64-bit x86-64 processes"))
        }
        // Symbols (never stops the target). libdwfl is not thread-safe: one user at a time.
        let opened: Result<SymbolSession, SymbolsError> = SymbolSession.lock.locked {
            do throws(SymbolsError) { return .success(try source.symbols(useDebugInfo: options.useDebugInfo)) } catch { return .failure(error) }
        }
        let session: SymbolSession
        switch opened {
        case .success(let s): session = s
        case .failure(.processGone): throw .process(.targetExited(pid: pid, during: "while its modules were being read"))
        case .failure(let e): throw .symbols(e.description)
        }
        let files = TargetFiles(pid: pid, maps: maps, executable: exe, filePath: { source.filePath($0) }, remote: source.remote)
        do { return (try GlibcPrepare.target(files, session: session, useDebugInfo: options.useDebugInfo), session) } catch { throw .allocator(error.allocatorError) }
    }
}

@inline(__always) func nowNs() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}
