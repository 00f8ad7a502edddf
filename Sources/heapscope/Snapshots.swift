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
        given: then every outstanding chunk's bytes too (secrets!). stat, chunks and types read \
        the file as they read a process; diff compares two files. Format: README "Snapshot files".
        """)
    @OptionGroup var target: TargetOptions
    @Option(name: .shortAndLong, help: "The file to write.") var output: String
    @Flag(help: "Also save the contents of every outstanding chunk.") var contents = false

    func run() throws {
        try target.requireLive("snapshot")
        let withContents = contents
        let t0 = monotonic()
        let s = try target.attach { pid, o throws(InspectError) in try Inspector.snapshot(pid: pid, options: o, contents: withContents) }
        let t1 = monotonic()
        do { try SnapshotFile.write(s, to: output) } catch {
            FileHandleErr.write("heapscope: \(error.description)\n"); throw ExitCode(1)
        }
        let t2 = monotonic()
        var st = stat()
        let size = stat(output, &st) == 0 ? UInt64(st.st_size) : 0
        let n = s.report.chunks.count
        if target.json {
            print("{\"file\":\(jsonString(output)),\"pid\":\(s.report.pid),\"pause_us\":\(s.report.pauseMicroseconds),\"chunks\":\(n),\"bytes\":\(size),\"contents\":\(contents),\"inspect_ms\":\(Int((t1 - t0) * 1000)),\"write_ms\":\(Int((t2 - t1) * 1000))}")
        } else {
            let per = n > 0 ? Double(size - UInt64(s.contents?.count ?? 0)) / Double(n) : 0
            print("wrote \(output): \(n) chunks, \(human(size)) (\(format1(per)) bytes per chunk before contents)\(contents ? ", with contents" : ""); paused \(format1(Double(s.report.pauseMicroseconds) / 1000)) ms; inspected in \(format1((t1 - t0) * 1000)) ms, written in \(format1((t2 - t1) * 1000)) ms")
        }
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
        lost, free memory malloc keeps (bins, tcache, top), mmapped chunks, arenas, threads.
        """)
    @Argument(help: "The older snapshot file.") var a: String
    @Argument(help: "The newer snapshot file.") var b: String
    @Option(help: "Group by type, size, owner or state.") var by = "type"
    @Option(help: "Print at most this many groups.") var limit = 30
    @Flag(help: "Print JSON instead of text.") var json = false

    func validate() throws {
        if !["type", "size", "owner", "state"].contains(by) { throw ValidationError("--by takes type, size, owner or state") }
        if limit < 0 { throw ValidationError("--limit must be >= 0") }
    }

    func run() throws {
        let sa = try readSnapshot(a), sb = try readSnapshot(b)
        let d = SnapshotDiff(sa, sb, by: by)
        var out = OutputBuffer()
        if json { d.json(into: &out, limit: limit, a: a, b: b) } else { d.text(into: &out, limit: limit, a: a, b: b) }
        out.flush()
    }
}

/// The comparison of two snapshots (see Diff).
struct SnapshotDiff {
    struct Group { var key: String; var a = Tally(); var b = Tally() }
    var groups: [Group] = []
    var new = Tally(), gone = Tally(), survivors = Tally(), changed = 0
    var causes: [(name: String, a: Int64, b: Int64)] = []
    let sa: Snapshot, sb: Snapshot, by: String

    init(_ sa: Snapshot, _ sb: Snapshot, by: String) {
        self.sa = sa; self.sb = sb; self.by = by
        let ta = TypeInspection(snapshot: sa), tb = TypeInspection(snapshot: sb)
        func key(_ t: TypeInspection, _ s: Snapshot, _ groups: TypeInspection.Groups, _ k: Int) -> String {
            let i = Int(t.blocks.chunk[k])
            switch by {
            case "size": return String(t.blocks.end[k] - t.blocks.start[k])
            case "owner": return s.owner[i] >= 0 ? s.owners[Int(s.owner[i])] : "(no owner)"
            case "state": return s.report.chunks.state[i].name
            default: return groups.name(groups.of[k])
            }
        }
        var index: [String: Int] = [:]
        func add(_ t: TypeInspection, _ s: Snapshot, _ isA: Bool) {
            let typeGroups = t.groups()
            for k in 0..<t.blocks.count {
                let g = key(t, s, typeGroups, k), bytes = t.blocks.end[k] - t.blocks.start[k]
                let at = index[g] ?? { groups.append(Group(key: g)); index[g] = groups.count - 1; return groups.count - 1 }()
                if isA { groups[at].a.add(bytes) } else { groups[at].b.add(bytes) }
            }
        }
        add(ta, sa, true); add(tb, sb, false)
        groups.sort { Int64(bitPattern: $0.b.bytes &- $0.a.bytes) > Int64(bitPattern: $1.b.bytes &- $1.a.bytes) }
        // Chunk identity: same user address, size and label.
        func offsets(_ t: TypeInspection) -> [UInt64] {
            var o: [UInt64] = [], sum: UInt64 = 0
            for k in 0..<t.blocks.count { o.append(sum); sum += t.blocks.end[k] - t.blocks.start[k] }
            return o
        }
        let oa = offsets(ta), ob = offsets(tb)
        var ka = 0
        var matchedA = [Bool](repeating: false, count: ta.blocks.count)
        for k in 0..<tb.blocks.count {
            let start = tb.blocks.start[k], size = tb.blocks.end[k] - start
            while ka < ta.blocks.count && ta.blocks.start[ka] < start { ka += 1 }
            if ka < ta.blocks.count, ta.blocks.start[ka] == start, ta.blocks.end[ka] - ta.blocks.start[ka] == size,
               ta.label(ka) == tb.label(k) {
                matchedA[ka] = true
                survivors.add(size)
                if let ca = sa.contents, let cb = sb.contents,
                   ca[Int(oa[ka])..<Int(oa[ka] + size)] != cb[Int(ob[k])..<Int(ob[k] + size)] { changed += 1 }
            } else { new.add(size) }
        }
        for k in 0..<ta.blocks.count where !matchedA[k] { gone.add(ta.blocks.end[k] - ta.blocks.start[k]) }
        // Causes of growth.
        func tally(_ s: Snapshot) -> [Int64] {
            let c = s.report.chunks
            var reach: Int64 = 0, lost: Int64 = 0, free: Int64 = 0, top: Int64 = 0, mm: Int64 = 0
            for i in 0..<c.count {
                let sz = Int64(c.size[i])
                switch c.state[i] {
                case .inUse: if s.leakClass[i] == LeakClass.stillReachable.rawValue { reach += sz } else { lost += sz }
                case .mmapped: mm += sz
                case .top: top += sz
                case .mallocInternal: break
                default: free += sz
                }
            }
            return [reach, lost, free, top, mm, Int64(s.report.arenas.count), Int64(s.report.threads.count)]
        }
        let xa = tally(sa), xb = tally(sb)
        causes = zip(["in use, reachable (bytes)", "in use, lost (bytes)", "free in bins and tcache (bytes)", "top (bytes)",
                      "mmapped chunks (bytes)", "arenas", "threads"], zip(xa, xb)).map { ($0, $1.0, $1.1) }
    }

    static func signed(_ v: Int64) -> String { v > 0 ? "+\(v)" : String(v) }

    func text(into out: inout OutputBuffer, limit: Int, a: String, b: String) {
        func who(_ s: Snapshot) -> String { "pid \(s.report.pid) (\(s.value("exe") ?? "?")), \(s.report.chunks.count) chunks" }
        out.write("A: \(a): \(who(sa))\nB: \(b): \(who(sb))\n")
        out.write("chunks: new in B \(new.count) (\(new.bytes) bytes), gone since A \(gone.count) (\(gone.bytes) bytes), survivors \(survivors.count) (\(survivors.bytes) bytes)")
        out.write(sa.contents != nil && sb.contents != nil ? ", \(changed) of them with changed contents\n" : "\n")
        out.write("\ngrowth by cause             \(pad("A", 14)) \(pad("B", 14)) \(pad("change", 14))\n")
        for c in causes { out.write("  \(pad(c.name, 32, left: true)) \(pad(String(c.a), 12)) \(pad(String(c.b), 14)) \(pad(SnapshotDiff.signed(c.b - c.a), 14))\n") }
        out.write("\nby \(by), largest growth first\(groups.count > limit ? " (\(limit) of \(groups.count))" : ""):\n")
        out.write("\(pad("A chunks", 10)) \(pad("A bytes", 12)) \(pad("B chunks", 10)) \(pad("B bytes", 12)) \(pad("chunks", 9)) \(pad("bytes", 12))  \(by)\n")
        for g in groups.prefix(limit) {
            out.write("\(pad(String(g.a.count), 10)) \(pad(String(g.a.bytes), 12)) \(pad(String(g.b.count), 10)) \(pad(String(g.b.bytes), 12)) ")
            out.write("\(pad(SnapshotDiff.signed(Int64(g.b.count) - Int64(g.a.count)), 9)) \(pad(SnapshotDiff.signed(Int64(g.b.bytes) - Int64(g.a.bytes)), 12))  \(g.key)\n")
        }
    }

    func json(into out: inout OutputBuffer, limit: Int, a: String, b: String) {
        func t(_ x: Tally) -> String { "{\"chunks\":\(x.count),\"bytes\":\(x.bytes)}" }
        out.write("{\"a\":\(jsonString(a)),\"b\":\(jsonString(b)),\"by\":\"\(by)\",\"new\":\(t(new)),\"gone\":\(t(gone)),\"survivors\":\(t(survivors))")
        out.write(",\"changed\":\(sa.contents != nil && sb.contents != nil ? String(changed) : "null"),\"causes\":[")
        out.write(causes.map { "{\"cause\":\(jsonString($0.name)),\"a\":\($0.a),\"b\":\($0.b),\"change\":\($0.b - $0.a)}" }.joined(separator: ","))
        out.write("],\"groups\":[")
        out.write(groups.prefix(limit).map { "{\"key\":\(jsonString($0.key)),\"a\":\(t($0.a)),\"b\":\(t($0.b)),\"change_chunks\":\(Int64($0.b.count) - Int64($0.a.count)),\"change_bytes\":\(Int64($0.b.bytes) - Int64($0.a.bytes))}" }.joined(separator: ","))
        out.write("]}\n")
    }
}

func monotonic() -> Double { Double(hs_monotonic_ns()) / 1e9 }
