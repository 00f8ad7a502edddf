import ArgumentParser
import Glibc
import HeapModel
import Inspect
import Output

/// Commands whose output can be JSON (their failures are printed as JSON too).
protocol JSONCommand { var wantsJSON: Bool { get } }

@main
struct Heapscope: ParsableCommand {
    /// The one place a failure becomes its message and exit status.
    static func main() {
        Terminal.prepare()
        var command: ParsableCommand
        do { command = try parseAsRoot() } catch { exit(withError: error) }
        do {
            try command.run()
        } catch let f as Failure {
            Terminal.report(f, json: (command as? JSONCommand)?.wantsJSON ?? false)
            exit(withError: ExitCode(f.status))
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
    @Option(help: ArgumentHelp("Copy the target's memory into an unnamed file in this directory (mode 0600, removed when heapscope exits) instead of heapscope's memory: for heaps bigger than the memory heapscope may use. The directory's file system must hold the copy.", valueName: "dir"))
    var spill: String? = nil

    /// A progress line on standard error: only on a terminal, never with --json.
    var showsProgress: Bool { Terminal.standardErrorIsTerminal && !json }
    /// Whether the argument names a snapshot file.
    var isSnapshot: Bool { (try? InspectTarget(argument: target))?.snapshotPath != nil }

    func validate() throws {
        if let p = Int32(target), p <= 0 { throw ValidationError("pid must be a positive process id, got \(p)") }
        _ = try maxStopMicroseconds(maxStop)
        try validateSpill(spill)
        if spill != nil && Int32(target) == nil { throw ValidationError("--spill is for a live process (a pid): a core or snapshot file is read where it is") }
    }

    var options: InspectOptions {
        var o = InspectOptions(useDebugInfo: !noDebuginfo && Environment.debugInfoEnabled)
        o.sharedRoots = sharedRoots
        o.force = force
        o.spillDirectory = spill
        o.maxStopMicroseconds = (try? maxStopMicroseconds(maxStop)) ?? o.maxStopMicroseconds
        if showsProgress { o.progress = { Terminal.progress($0) } }
        return o
    }

    /// Run one inspection of the target (progress on a terminal); an InspectError becomes the
    /// command's Failure.
    func attach<T>(_ body: (InspectTarget, InspectOptions) throws -> T) throws -> T {
        if showsProgress { Terminal.progress("inspecting \(target)") }
        defer { if showsProgress { Terminal.progress(nil) } }
        let t = try InspectTarget(argument: target)
        do { return try body(t, options) } catch let e as InspectError { throw e.failure }
    }
}

/// A size argument: bytes, or a number with K, M or G (binary: 1K = 1024; KiB, MiB and GiB too).
struct ByteCount: ExpressibleByArgument {
    var bytes: UInt64
    init?(argument: String) {
        let units: [(String, UInt64)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("B", 1)]
        for (u, f) in units where argument.uppercased().hasSuffix(u.uppercased()) {
            guard let v = UInt64(argument.dropLast(u.count)) else { return nil }
            let (b, o) = v.multipliedReportingOverflow(by: f)
            if o { return nil }
            bytes = b; return
        }
        guard let v = UInt64(argument) else { return nil }
        bytes = v
    }
}

/// A duration argument: 500ms, 10s, 5m, 2h (a bare number is seconds); nil if it is not one.
func parseDuration(_ s: String) -> Double? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (u, f) in units where s.hasSuffix(u) {
        if let v = Double(s.dropLast(u.count)), v >= 0, v.isFinite { return v * f }
    }
    return Double(s).flatMap { $0 >= 0 && $0.isFinite ? $0 : nil }
}

/// --spill DIR: an existing directory.
func validateSpill(_ dir: String?) throws {
    guard let d = dir else { return }
    var st = stat()
    guard stat(d, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { throw ValidationError("--spill takes an existing directory: \(d) is not one") }
}

/// --max-stop: from 1 ms to 10 minutes.
func maxStopMicroseconds(_ s: String) throws -> UInt64 {
    guard let v = parseDuration(s), v >= 0.001, v <= 600 else {
        throw ValidationError("--max-stop takes a duration from 1ms to 10m, such as 250ms or 2s: got '\(s)'")
    }
    return UInt64(v * 1_000_000)
}

/// Exit 2 when the walk found corruption (the output is complete otherwise).
func finish(_ r: HeapReport, say: Bool = false) throws {
    if let f = corruption(r, say: say) { throw f }
}

/// A command-line address argument, or exit 64 (usage) saying why not.
func addressArgument(_ s: String) throws -> UInt64 {
    switch parseHexAddress(s) {
    case .success(let a): return a
    case .failure(let e): throw Failure(.usage, e.message)
    }
}

struct Stat: ParsableCommand, TargetCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summary of every arena, mmapped chunks, and mallinfo2 as the target itself would report it.",
        discussion: Examples.stat)
    @OptionGroup var target: TargetOptions

    func run() throws {
        let r = try target.attach { t, o in var o = o; o.accountMemory = true; return try Inspector.inspect(t, options: o) }
        print(target.json ? StatFormat.json(r) : StatFormat.text(r), terminator: "")
        try finish(r)
    }
}

struct Chunks: ParsableCommand, TargetCommand {
    static let configuration = CommandConfiguration(
        abstract: "One row per chunk: address, user address, size, usable size, arena, state, type.",
        discussion: """
        Types of outstanding chunks as `heapscope types` labels them (declared, vtable, heuristic); \
        that copies every writable mapping while the target is stopped. --no-types copies only \
        the heap (a shorter pause) and leaves the column out.
        """ + Examples.chunks)
    @OptionGroup var target: TargetOptions
    @Option(help: "Only chunks in this state: \(Inspector.chunkStateNames.joined(separator: ", ")).") var state: String?
    @Option(help: "Only chunks of this arena (0 = main; mmapped chunks have none).") var arena: Int?
    @Option(help: ArgumentHelp("Only chunks of at least this size (bytes, or with K, M, G: 1K = 1024).", valueName: "size")) var minSize: ByteCount?
    @Option(help: ArgumentHelp("Only outstanding chunks of this type, as the type column prints it (\"struct node\", \"char[]\", \"(unknown)\").", valueName: "type"))
    var type: String?
    @Option(help: ArgumentHelp("Only outstanding chunks first reached from this root, as `types` names its owners (\"table (typed.c:24)\").", valueName: "root"))
    var owner: String?
    @Option(name: .customLong("class"), help: ArgumentHelp("Only outstanding chunks of this leak class, as `leaks` classifies them: \(chunkClassNames.joined(separator: ", ")).", valueName: "class"))
    var leakClass: String?
    @Option(help: "Print at most this many rows.") var limit: Int?
    @Flag(help: "Leave out the type column (copies only the heap: a shorter pause).") var noTypes = false

    func validate() throws {
        if let s = state, !Inspector.chunkStateNames.contains(s) {
            throw ValidationError("unknown state '\(s)'; one of: \(Inspector.chunkStateNames.joined(separator: ", "))")
        }
        if let l = limit, l < 0 { throw ValidationError("--limit must be >= 0") }
        if noTypes && (type != nil || owner != nil) { throw ValidationError("--type and --owner need the types (leave out --no-types)") }
        if let c = leakClass, !chunkClassNames.contains(c) { throw ValidationError("unknown class '\(c)'; one of: \(chunkClassNames.joined(separator: ", "))") }
    }

    func run() throws {
        var types: TypeInspection? = nil, inClass: [Bool]? = nil
        let r: HeapReport
        if let c = leakClass {
            let withTypes = !noTypes
            let l = try target.attach { t, o in try Inspector.leaks(t, options: o, types: withTypes, typesOfReachable: true) }
            (r, types, inClass) = (l.heap, l.types, chunksOfClass(l, c))
        } else if noTypes { r = try target.attach { t, o in try Inspector.inspect(t, options: o) } } else {
            types = try target.attach { t, o in try Inspector.types(t, options: o) }
            r = types!.heap
        }
        let rows = chunkRows(r, state: state, arena: arena, minSize: minSize?.bytes, limit: limit, types: types, type: type, owner: owner, inClass: inClass)
        if target.json { var j = JSONWriter(); ChunkFormat.json(r, rows: rows, types: types, into: &j); j.flush() }
        else { var out = OutputBuffer(); ChunkFormat.text(r, rows: rows, types: types, into: &out); out.flush() }
        try finish(r)
    }
}

/// A command on one target (a process, core file or snapshot file).
protocol TargetCommand: JSONCommand { var target: TargetOptions { get } }
extension TargetCommand { var wantsJSON: Bool { target.json } }
