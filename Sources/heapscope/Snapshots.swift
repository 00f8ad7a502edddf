import Analysis
import ArgumentParser
import CShim
import Glibc
import HeapModel
import Inspect
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

extension SnapshotDiff {
    static func signed(_ v: Int64) -> String { v > 0 ? "+\(v)" : String(v) }

    func text(into out: inout OutputBuffer, limit: Int, a: String, b: String, _ sa: Snapshot, _ sb: Snapshot) {
        func who(_ s: Snapshot) -> String { "pid \(s.report.pid) (\(s.value("exe") ?? "?")), \(s.report.chunks.count) chunks" }
        out.write("A: \(a): \(who(sa))\nB: \(b): \(who(sb))\n")
        for (k, v) in sb.meta where k.hasPrefix("build_id:") {
            if let old = sa.value(k), old != v { out.write("note: \(k.dropFirst(9)) is another build in B (build-id \(old) -> \(v))\n") }
        }
        out.write("chunks: new in B \(new.count) (\(new.bytes) bytes), gone since A \(gone.count) (\(gone.bytes) bytes), survivors \(survivors.count) (\(survivors.bytes) bytes)")
        out.write(changed.map { ", \($0) of them with changed contents\n" } ?? "\n")
        out.write("\ngrowth by cause                              \(pad("A", 14)) \(pad("B", 14)) \(pad("change", 14))\n")
        for c in causes {
            let name = c.name
            out.write("  \(pad(name, 43, left: true)) \(pad(String(c.a), 14)) \(pad(String(c.b), 14)) \(pad(SnapshotDiff.signed(c.b - c.a), 14))\n")
        }
        if sb.report.heap.exitedThreads == nil { out.write("  (exited threads: this glibc's thread descriptors are not known)\n") }
        out.write("\nby \(by), largest growth first\(groups.count > limit ? " (\(limit) of \(groups.count))" : ""):\n")
        out.write("\(pad("A chunks", 10)) \(pad("A bytes", 12)) \(pad("B chunks", 10)) \(pad("B bytes", 12)) \(pad("chunks", 9)) \(pad("bytes", 12))  \(by)\n")
        for g in groups.prefix(limit) {
            out.write("\(pad(String(g.a.count), 10)) \(pad(String(g.a.bytes), 12)) \(pad(String(g.b.count), 10)) \(pad(String(g.b.bytes), 12)) ")
            out.write("\(pad(SnapshotDiff.signed(Int64(g.b.count) - Int64(g.a.count)), 9)) \(pad(SnapshotDiff.signed(Int64(g.b.bytes) - Int64(g.a.bytes)), 12))  \(g.key)\n")
        }
    }

    func json(into out: inout OutputBuffer, limit: Int, a: String, b: String) {
        func t(_ x: Tally) -> String { "{\"chunks\":\(x.count),\"bytes\":\(x.bytes)}" }
        out.write("{\"a\":\(jsonString(a)),\"b\":\(jsonString(b)),\"by\":\"\(by.rawValue)\",\"new\":\(t(new)),\"gone\":\(t(gone)),\"survivors\":\(t(survivors))")
        out.write(",\"changed\":\(changed.map(String.init) ?? "null"),\"causes\":[")
        out.write(causes.map { "{\"id\":\"\($0.id)\",\"cause\":\(jsonString($0.name)),\"unit\":\"\($0.unit)\",\"a\":\($0.a),\"b\":\($0.b),\"change\":\($0.b - $0.a)}" }.joined(separator: ","))
        out.write("],\"groups\":[")
        out.write(groups.prefix(limit).map { "{\"key\":\(jsonString($0.key)),\"a\":\(t($0.a)),\"b\":\(t($0.b)),\"change_chunks\":\(Int64($0.b.count) - Int64($0.a.count)),\"change_bytes\":\(Int64($0.b.bytes) - Int64($0.a.bytes))}" }.joined(separator: ","))
        out.write("]}\n")
    }
}

/// An output file checked before any work (OutputFile's rules); exit 1 with the reason if refused.
func checkedOutput(_ path: String, follow: Bool, json: Bool = false) throws -> OutputFile {
    do { return try OutputFile(path, follow: follow) } catch { throw failure(error.description, code: ExitStatus.otherError.rawValue, json: json) }
}

func monotonic() -> Double { Double(hs_monotonic_ns()) / 1e9 }
