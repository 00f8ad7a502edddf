import ArgumentParser
import CShim
import Glibc
import HeapModel
import Inspect
import Output
import Snapshot

@main
struct Heapscope: ParsableCommand {
    static func main() {
        hs_check_output_at_exit()
        hs_honor_termination_signals()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
        exit()
    }

    static let configuration = CommandConfiguration(
        commandName: "heapscope",
        abstract: "Find out where a running process's memory went: walk its glibc malloc heap from outside.",
        discussion: """
        heapscope attaches with ptrace, stops every thread only while it copies the heap \
        (the pause is printed), detaches, and analyses the copy. It never writes to the target.

        \(ExitStatus.helpText)

        Every command that takes a PID also takes a core file (gcore's, the kernel's, \
        systemd-coredump's; told by its contents): nothing is stopped then. stat, chunks, types, \
        leaks, why and show also take a snapshot file (heapscope snapshot); show needs one taken \
        with --contents.

        Environment: HEAPSCOPE_NO_DEBUGINFO=1 ignores separate debug files (same as --no-debuginfo).
        """,
        version: HeapscopeVersion.description,
        subcommands: [Stat.self, Chunks.self, Leaks.self, Why.self, Types.self, Show.self, SnapshotCommand.self, Diff.self, Watch.self, Sym.self, Gensyms.self])
}

/// Options every command that attaches shares.
struct TargetOptions: ParsableArguments {
    @Argument(help: "Process id of the target, a core file (gcore, the kernel's, systemd-coredump's), or a snapshot file (heapscope snapshot).") var target: String
    @Flag(help: "Print JSON instead of text.") var json = false
    @Flag(help: "Do not use separate debug files; find malloc's state by signature.") var noDebuginfo = false
    @Option(help: ArgumentHelp("The longest the target may be stopped in all (every attempt counted); past it the target is released and heapscope exits 9.", valueName: "duration"))
    var maxStop = "1s"
    @Flag(help: "Stop the target even if its seccomp filter would kill it for that (a thread asleep in nanosleep and restart_syscall not allowed). Never needed otherwise.")
    var force = false
    @Flag(help: "Also copy shared writable mappings (rw-s: shared memory, mapped files) as roots; by default they are left out, and the output says how much.")
    var sharedRoots = false

    var pid: Int32 { Int32(target) ?? 0 }
    /// Digits only: a pid (even one too large to be one), never a file name.
    var isPid: Bool { !target.isEmpty && target.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
    /// The core file named instead of a PID (told by its contents, not its name).
    var corePath: String? { isPid || Int32(target) != nil || !InspectTarget.isCoreFile(target) ? nil : target }
    /// The snapshot file named instead of a PID: any other file.
    var snapshotPath: String? { isPid || Int32(target) != nil || corePath != nil ? nil : target }
    /// What to inspect: the process, or the core file.
    var inspectTarget: InspectTarget { corePath.map { .core(path: $0) } ?? .process(pid) }

    func validate() throws {
        if let p = Int32(target), p <= 0 { throw ValidationError("pid must be a positive process id, got \(p)") }
        if isPid && Int32(target) == nil { throw failure("no such process: \(target)", code: ExitStatus.noSuchProcess.rawValue, json: json) }
        _ = try maxStopMicroseconds(maxStop)
    }

    /// Commands that need a process image (a live process or a core file).
    func requireLive(_ command: String) throws {
        guard let path = snapshotPath else { return }
        throw ValidationError("\(command) needs a live process (a PID) or a core file; '\(path)' is neither. Snapshots give stat, chunks, types, leaks, why, show and diff")
    }

    /// The snapshot file named instead of a PID, read and checked (exit 8 if it cannot be).
    func loadSnapshot() throws -> Snapshot { try readSnapshot(snapshotPath ?? target, json: json) }

    /// Type labels of the target: inspected, or as a snapshot recorded them.
    func types() throws -> TypeInspection {
        if snapshotPath != nil { return TypeInspection(snapshot: try loadSnapshot()) }
        return try attach { t, o throws(InspectError) in try Inspector.types(t, options: o) }
    }

    var options: InspectOptions {
        var o = InspectOptions()
        if noDebuginfo { o.useDebugInfo = false }
        o.sharedRoots = sharedRoots
        o.force = force
        o.maxStopMicroseconds = (try? maxStopMicroseconds(maxStop)) ?? o.maxStopMicroseconds
        return o
    }

    /// Run one inspection of the target (progress on a terminal); its failure ends the command
    /// with the message and the documented exit code.
    func attach<T>(_ body: (InspectTarget, InspectOptions) throws(InspectError) -> T) throws -> T {
        if isatty(2) != 0 && !json { FileHandleErr.write("heapscope: inspecting \(target)...\r") }
        defer { if isatty(2) != 0 && !json { FileHandleErr.write("\u{1b}[2K\r") } }
        do { return try body(inspectTarget, options) } catch {
            fail(error.description, code: error.exitCode)
            throw ExitCode(error.exitCode)
        }
    }

    /// An error: on stderr, and with --json also as JSON on stdout.
    func fail(_ message: String, code: Int32) { _ = failure(message, code: code, json: json) }

    func inspect() throws -> HeapReport {
        if snapshotPath != nil { return try loadSnapshot().report }
        return try attach { t, o throws(InspectError) in try Inspector.inspect(t, options: o) }
    }
}

/// An error on stderr and, with `json`, as {"error": {"code": N, "message": "..."}} on stdout;
/// returns the exit code to throw.
func failure(_ message: String, code: Int32, json: Bool) -> ExitCode {
    FileHandleErr.write("heapscope: \(message)\n")
    if json { print("{\"error\":{\"code\":\(code),\"message\":\(jsonString(message))}}") }
    return ExitCode(code)
}

/// A snapshot file, read and checked; exit 8 if it cannot be (with `json`, the error as JSON on stdout too).
func readSnapshot(_ path: String, json: Bool = false) throws -> Snapshot {
    do { return try SnapshotFile.read(path) } catch { throw failure(error.description, code: ExitStatus.badInputFile.rawValue, json: json) }
}

/// A duration argument: 500ms, 10s, 5m, 2h (a bare number is seconds); nil if it is not one.
func parseDuration(_ s: String) -> Double? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (u, f) in units where s.hasSuffix(u) {
        if let v = Double(s.dropLast(u.count)), v >= 0, v.isFinite { return v * f }
    }
    return Double(s).flatMap { $0 >= 0 && $0.isFinite ? $0 : nil }
}

/// --max-stop: from 1 ms to 10 minutes.
func maxStopMicroseconds(_ s: String) throws -> UInt64 {
    guard let v = parseDuration(s), v >= 0.001, v <= 600 else {
        throw ValidationError("--max-stop takes a duration from 1ms to 10m, such as 250ms or 2s: got '\(s)'")
    }
    return UInt64(v * 1_000_000)
}

enum FileHandleErr {
    static func write(_ s: String) { _ = s.withCString { Glibc.write(2, $0, strlen($0)) } }
}

/// The kinds of warning that mean the heap is corrupted (exit 2).
let corruptionKinds: Set<HeapWarning.Kind> = [.corruptChunk, .corruptList, .listCycle, .corruptArena]

/// Exit 2 when the walk found corruption (the output is complete otherwise). `say`: for commands
/// whose output does not list warnings, name them on stderr first.
func finish(_ r: HeapReport, say: Bool = false) throws {
    let bad = r.warnings.filter { corruptionKinds.contains($0.kind) }
    guard !bad.isEmpty else { return }
    if say {
        var s = "heapscope: the heap is corrupted (\(bad.count) warning\(bad.count == 1 ? "" : "s"); heapscope stat shows every warning):\n"
        for w in bad.prefix(5) { s += "  [\(w.kind.rawValue)] \(w.message)\n" }
        if bad.count > 5 { s += "  ... \(bad.count - 5) more\n" }
        FileHandleErr.write(s)
    }
    throw ExitCode(ExitStatus.corrupted.rawValue)
}

struct Stat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summary of every arena, mmapped chunks, and mallinfo2 as the target itself would report it.")
    @OptionGroup var target: TargetOptions

    func run() throws {
        let r = try target.inspect()
        print(target.json ? StatFormat.json(r) : StatFormat.text(r), terminator: "")
        try finish(r)
    }
}

struct Chunks: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One row per chunk: address, user address, size, usable size, arena, state, type.",
        discussion: """
        Types of outstanding chunks as `heapscope types` labels them (declared, vtable, heuristic); \
        that copies every writable mapping while the target is stopped. --no-types copies only \
        the heap (a shorter pause) and leaves the column out.
        """)
    @OptionGroup var target: TargetOptions
    @Option(help: "Only chunks in this state: \(Inspector.chunkStateNames.joined(separator: ", ")).") var state: String?
    @Option(help: "Only chunks of this arena (0 = main; mmapped chunks have none).") var arena: Int?
    @Option(help: "Only chunks of at least this many bytes.") var minSize: UInt64?
    @Option(help: "Print at most this many rows.") var limit: Int?
    @Flag(help: "Leave out the type column (copies only the heap: a shorter pause).") var noTypes = false

    func validate() throws {
        if let s = state, !Inspector.chunkStateNames.contains(s) {
            throw ValidationError("unknown state '\(s)'; one of: \(Inspector.chunkStateNames.joined(separator: ", "))")
        }
        if let l = limit, l < 0 { throw ValidationError("--limit must be >= 0") }
    }

    func run() throws {
        var types: TypeInspection? = nil
        let r: HeapReport
        if noTypes { r = try target.inspect() } else {
            types = try target.types()
            r = types!.heap
        }
        let want = state.flatMap { r.chunks.filter(named: $0) }
        let t = r.chunks
        var rows: [Int] = []
        for i in 0..<t.count {
            if let w = want, !w(i) { continue }
            if let a = arena, t.arena[i] != UInt16(truncatingIfNeeded: a) || t.arena[i] == ChunkTable.noArena { continue }
            if let m = minSize, t.size[i] < m { continue }
            rows.append(i)
            if let l = limit, rows.count >= l { break }
        }
        var out = OutputBuffer()
        if target.json { ChunkFormat.json(r, rows: rows, types: types, into: &out) } else { ChunkFormat.text(r, rows: rows, types: types, into: &out) }
        out.flush()
        try finish(r)
    }
}
