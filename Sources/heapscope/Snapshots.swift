import ArgumentParser
import CShim
import Glibc
import Inspect
import Output
import Snapshot

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Save one inspection to a file: heap walk, arenas, mallinfo2, threads, every chunk with its leak class, type and owner.",
        discussion: """
        One pause, as `leaks`. The file (mode 0600) holds no heap contents unless --contents is \
        given: then every outstanding chunk's bytes too (secrets!). stat, chunks, types, leaks, \
        why and show read the file instead of a process (show needs --contents); diff compares \
        two files. --pprof also writes a gzipped pprof heap profile. Format: README "Snapshot files".
        """)
    @OptionGroup var target: TargetOptions
    @Option(name: .shortAndLong, help: "The file to write.") var output: String
    @Flag(help: "Also save the contents of every outstanding chunk.") var contents = false
    @Option(help: ArgumentHelp("Also write the heap as a gzipped pprof profile (inuse_objects, inuse_space; stacks = owner chains).", valueName: "file"))
    var pprof: String?
    @Flag(help: "Write through a symbolic link given as --output or --pprof (refused otherwise).") var follow = false

    func run() throws {
        try target.requireLive("snapshot")
        // Where the files go is checked before the target is stopped.
        let file = try checkedOutput(output, follow: follow, json: target.json)
        let pprofFile = try pprof.map { p throws in try checkedOutput(p, follow: follow, json: target.json) }
        let withContents = contents
        let t0 = monotonic()
        let s = try target.attach { t, o throws(InspectError) in try Inspector.snapshot(t, options: o, contents: withContents) }
        let t1 = monotonic()
        var t2 = t1
        do {
            try SnapshotFile.write(s, to: file)
            t2 = monotonic()
            if let pprofFile { try PprofProfile(heapOf: s).write(to: pprofFile) }
        } catch {
            throw failure(error.description, code: ExitStatus.otherError.rawValue, json: target.json)
        }
        var st = stat()
        let size = stat(output, &st) == 0 ? UInt64(st.st_size) : 0
        let n = s.report.chunks.count
        if target.json {
            print("{\"file\":\(jsonString(output)),\"pid\":\(s.report.pid),\"pause_us\":\(s.report.pauseMicroseconds),\"chunks\":\(n),\"bytes\":\(size),\"contents\":\(contents),\"inspect_ms\":\(Int((t1 - t0) * 1000)),\"write_ms\":\(Int((t2 - t1) * 1000))\(copyJSON(s.report))}")
        } else {
            let per = n > 0 ? Double(size - UInt64(s.contents?.count ?? 0)) / Double(n) : 0
            print("wrote \(output): \(n) chunks, \(human(size)) (\(format1(per)) bytes per chunk before contents)\(contents ? ", with contents" : ""); \(pausedText(s.report)); inspected in \(format1((t1 - t0) * 1000)) ms, written in \(format1((t2 - t1) * 1000)) ms")
            if let c = copyText(s.report) { print(c) }
        }
        // (the file is written, with the warnings in it)
        try finish(s.report, say: true)
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two snapshots: what grew, by type, size, owner or state; chunks new, gone and surviving.",
        discussion: """
        Groups of outstanding chunks (in_use and mmapped) with their count and bytes in A, in B \
        and the change, largest growth first. A survivor is a chunk at the same address with the \
        same size and type in both (and, when both snapshots hold contents, the same bytes; \
        otherwise it is counted as changed). Causes: in-use growth split into reachable and \
        lost, free memory malloc keeps (caches, free lists, top) and what malloc_trim(0) would return, \
        mmapped chunks, arenas, threads, and threads that exited without being joined (their \
        stacks and heap blocks stay until pthread_join).
        """)
    @Argument(help: "The older snapshot file.") var a: String
    @Argument(help: "The newer snapshot file.") var b: String
    @Option(help: "Group by type, size, owner or state.") var by: SnapshotDiff.Key = .type
    @Option(help: "Print at most this many groups.") var limit = 30
    @Flag(help: "Print JSON instead of text.") var json = false
    @Option(help: ArgumentHelp("Also write B minus A per owner chain as a gzipped pprof profile (what pprof -diff_base shows).", valueName: "file"))
    var pprof: String?
    @Flag(help: "Write through a symbolic link given as --pprof (refused otherwise).") var follow = false

    func validate() throws {
        if limit < 0 { throw ValidationError("--limit must be >= 0") }
    }

    func run() throws {
        let pprofFile = try pprof.map { p throws in try checkedOutput(p, follow: follow, json: json) }
        let sa = try readSnapshot(a, json: json), sb = try readSnapshot(b, json: json)
        let d = SnapshotDiff(sa, sb, by: by)
        if let pprofFile {
            do { try PprofProfile(heapOf: sb, base: sa, types: (d.typesB, d.typesA)).write(to: pprofFile) } catch {
                throw failure(error.description, code: ExitStatus.otherError.rawValue, json: json)
            }
        }
        var out = OutputBuffer()
        if json { d.json(into: &out, limit: limit, a: a, b: b) } else { d.text(into: &out, limit: limit, a: a, b: b, sa, sb) }
        out.flush()
    }
}

extension SnapshotDiff.Key: ExpressibleByArgument {}

/// An output file checked before any work (OutputFile's rules); exit 1 with the reason if refused.
func checkedOutput(_ path: String, follow: Bool, json: Bool = false) throws -> OutputFile {
    do { return try OutputFile(path, follow: follow) } catch { throw failure(error.description, code: ExitStatus.otherError.rawValue, json: json) }
}

func monotonic() -> Double { Double(hs_monotonic_ns()) / 1e9 }
