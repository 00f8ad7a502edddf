import HeapModel
import Inspect
import Snapshot

public extension SnapshotDiff {
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

