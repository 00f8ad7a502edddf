import Analysis
import CShim
import Glibc
import HeapModel
import Inspect
import Snapshot
import Symbols

/// What the command line sets up before any command, and how it reports a failure.
public enum Terminal {
    /// Output that cannot be written fails the command (exit 1); SIGTERM, SIGINT and SIGHUP end
    /// it after the target is detached (exit 128+N).
    public static func prepare() {
        hs_check_output_at_exit()
        hs_honor_termination_signals()
    }

    /// A line on standard error, "heapscope: MESSAGE".
    public static func warn(_ message: String) {
        let s = "heapscope: \(message)\n"
        _ = s.withCString { Glibc.write(2, $0, strlen($0)) }
    }
    /// Text on standard error as it is.
    public static func status(_ text: String) { _ = text.withCString { Glibc.write(2, $0, strlen($0)) } }
    /// The progress line on a terminal: "heapscope: PHASE..." over the previous one, with the
    /// seconds since the first; nil clears it.
    public static func progress(_ phase: String?) {
        guard let phase else { status("\u{1b}[2K\r"); return }
        let now = monotonicSeconds()
        if progressStart == 0 { progressStart = now }
        status("\u{1b}[2K\rheapscope: \(phase)... (\(format1(now - progressStart)) s)\r")
    }
    nonisolated(unsafe) static var progressStart = 0.0
    public static var standardErrorIsTerminal: Bool { isatty(2) != 0 }

    /// A failure: its message on standard error and, with `json`, `{"error":{"code":N,"message":"..."}}`
    /// on standard output (not when the output is complete and says it: corruption found).
    public static func report(_ f: Failure, json: Bool) {
        if !f.message.isEmpty { warn(f.message) }
        if json && !f.outputComplete {
            print(JSONWriter.documentLine { o in o.object("error") { $0.field("code", f.status); $0.field("message", f.message) } }, terminator: "")
        }
        fflush(nil)
    }
}

/// The kinds of warning that mean the heap is corrupted (exit 2).
public let corruptionKinds: Set<HeapWarning.Kind> = [.corruptChunk, .corruptList, .listCycle, .corruptArena]

/// Exit 2 when the walk found corruption (the output is complete otherwise), or nil. `say`: for
/// commands whose output does not list the warnings, the message names them.
public func corruption(_ r: HeapReport, say: Bool = false) -> Failure? {
    let bad = r.warnings.filter { corruptionKinds.contains($0.kind) }
    guard !bad.isEmpty else { return nil }
    var s = ""
    if say {
        s = "the heap is corrupted (\(bad.count) warning\(bad.count == 1 ? "" : "s"); heapscope stat shows every warning):"
        for w in bad.prefix(5) { s += "\n  [\(w.kind.rawValue)] \(w.message)" }
        if bad.count > 5 { s += "\n  ... \(bad.count - 5) more" }
    }
    return Failure(.corrupted, s, outputComplete: true)
}

/// `chunks`' rows: the chunks that pass every filter, in address order, at most `limit`.
/// `type` and `owner` (with `types`): outstanding chunks of that type label (as the type column
/// prints it, "(unknown)" for none) or first reached from that root.
/// The leak class names `chunks --class` takes: each class's, and "lost" (definitely or indirectly).
public let chunkClassNames = LeakClass.allCases.map(\.name) + ["lost"]

/// Per chunk of `r`'s table, whether it is in the leak class named `name` (false for chunks
/// that are not outstanding).
public func chunksOfClass(_ r: LeakInspection, _ name: String) -> [Bool] {
    var out = [Bool](repeating: false, count: r.heap.chunks.count)
    let b = r.leaks.blocks, cls = r.leaks.leakClass
    for k in 0..<b.count {
        let c = cls[k]
        out[Int(b.chunk[k])] = name == "lost" ? (c == .definitelyLost || c == .indirectlyLost) : c.name == name
    }
    return out
}

public func chunkRows(_ r: HeapReport, state: String?, arena: Int?, minSize: UInt64?, limit: Int?,
                      types: TypeInspection? = nil, type: String? = nil, owner: String? = nil, inClass: [Bool]? = nil) -> [Int] {
    let t = r.chunks
    let want = state.flatMap { t.filter(named: $0) }
    var rows: [Int] = []
    if limit == 0 { return rows }
    let block = (type != nil || owner != nil) ? ChunkFormat.blockOfChunk(types, count: t.count) : []
    for i in 0..<t.count {
        if let w = want, !w(i) { continue }
        if let c = inClass, !c[i] { continue }
        if !block.isEmpty {
            let k = Int(block[i])
            guard k >= 0, let ty = types else { continue }
            if let type, (ty.label(k) ?? "(unknown)") != type { continue }
            if let owner, ty.owner(k) != owner { continue }
        }
        if let a = arena, t.arena[i] != UInt16(truncatingIfNeeded: a) || t.arena[i] == ChunkTable.noArena { continue }
        if let m = minSize, t.size[i] < m { continue }
        rows.append(i)
        if let l = limit, rows.count >= l { break }
    }
    return rows
}

public enum TypesFormat {
    /// `types`' table: per type the chunks, bytes, share, confidence and top owners, of the
    /// chunks in `state` (a kind or state name) or all outstanding ones.
    public static func write(_ r: TypeInspection, state: String?, owners: Int, json: Bool, into out: inout OutputBuffer) {
        let table = r.heap.chunks
        let want = state.flatMap { table.filter(named: $0) }, chunk = r.blocks.chunk
        let rows = r.histogram(topOwners: max(owners, 0)) { k in want.map { $0(Int(chunk[k])) } ?? true }
        let total = rows.reduce(UInt64(0)) { $0 + $1.bytes }
        if json {
            var j = JSONWriter()
            j.document { o in
                o.field("pid", r.heap.pid); o.field("pause_us", r.heap.pauseMicroseconds); o.field("debug_info_us", r.debugInfoMicroseconds)
                o.field("propagation_us", r.propagationMicroseconds); o.field("rounds", r.labels.rounds); o.field("bytes", total)
                o.field("conflicts", r.labels.conflicts)
                copyFields(r.heap, into: &o)
                o.array("types") { a in
                    for row in rows {
                        a.object { t in
                            t.field("type", row.type); t.field("confidence", row.confidence.name); t.field("ambiguous", row.ambiguous)
                            t.field("chunks", row.chunks); t.field("bytes", row.bytes)
                            t.array("owners") { w in for o in row.owners { w.object { $0.field("root", o.name); $0.field("chunks", o.chunks) } } }
                        }
                    }
                }
            }
            j.endLine()
            out.write(j.text)
            return
        }
        let typed = rows.filter { $0.confidence != .unknown }.reduce(0) { $0 + $1.chunks }
        out.write("pid \(r.heap.pid): \(pausedText(r.heap)); \(human(total)) outstanding in \(rows.reduce(0) { $0 + $1.chunks }) chunks, \(typed) typed")
        out.write(r.labels.conflicts > 0 ? " (\(r.labels.conflicts) reached with conflicting types)\n" : "\n")
        if let c = copyText(r.heap) { out.write(c + "\n") }
        out.write("\(pad("chunks", 10)) \(pad("bytes", 12))  share  confidence  type\n")
        for row in rows {
            let share = total > 0 ? Double(row.bytes) * 100 / Double(total) : 0
            out.write("\(pad(String(row.chunks), 10)) \(pad(human(row.bytes), 12)) \(pad(format1(share) + "%", 6))  \(pad(row.confidence.name, 10, left: true))  \(row.type)\(row.ambiguous ? " (via union)" : "")\n")
            for o in row.owners { out.write("\(String(repeating: " ", count: 44))\(pad(String(o.chunks), 8)) from \(o.name)\n") }
        }
    }
}

public enum SnapshotFormat {
    /// What `snapshot` says it wrote.
    public static func written(_ w: SnapshotWritten, json: Bool) -> String {
        let r = w.snapshot.report, n = r.chunks.count
        if json {
            return JSONWriter.documentLine { o in
                o.field("file", w.path); o.field("pid", r.pid); o.field("pause_us", r.pauseMicroseconds); o.field("chunks", n)
                o.field("bytes", w.fileBytes); o.field("contents", w.contents)
                o.field("inspect_us", Int(w.inspectSeconds * 1e6)); o.field("write_us", Int(w.writeSeconds * 1e6))
                copyFields(r, into: &o)
            }
        }
        let per = n > 0 ? Double(w.fileBytes &- UInt64(w.snapshot.contents?.count ?? 0)) / Double(n) : 0
        var s = "wrote \(w.path): \(n) chunks, \(human(w.fileBytes)) (\(format1(per)) bytes per chunk before contents)\(w.contents ? ", with contents" : ""); \(pausedText(r)); inspected in \(format1(w.inspectSeconds * 1000)) ms, written in \(format1(w.writeSeconds * 1000)) ms\n"
        if let c = copyText(r) { s += c + "\n" }
        return s
    }
}

public enum GensymsFormat {
    /// Every symbol of the sessions' modules, sorted by address, grouped under 'Src: FILE'
    /// (AIX gensyms); with `json` one object per symbol.
    public static func write(_ sessions: inout Sessions, files: [String], json: Bool) {
        var j = JSONWriter(capacity: 1 << 20)
        let list: [SymbolSession] = sessions.process.map { [$0] } ?? files.compactMap { try? sessions.file($0) }
        for session in list {
            let (syms, mods) = session.allSymbols()
            if !json {
                for m in mods {
                    j.out.write("Module: \(m.name)" + (m.buildID.map { "  build-id \($0)" } ?? "") + "  symbols from \(m.source)\n")
                }
            }
            var lastSrc: String?? = .none
            for s in syms {
                if json {
                    j.object { o in
                        o.field("module", s.module); o.field("address", hex(s.address)); o.field("size", s.size)
                        o.field("type", String(s.type)); o.field("name", s.name); o.field("file", s.file)
                    }
                    j.endLine()
                    continue
                }
                if lastSrc != .some(s.file) {
                    j.out.write("Src: \(s.file ?? "(none)")\n")
                    lastSrc = .some(s.file)
                }
                j.out.write("  \(SymOutput.hex16(s.address))  \(pad(String(s.size), 8))  \(s.type)  \(s.name)\n")
            }
        }
        j.flush()
    }
}
