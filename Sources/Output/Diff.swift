import HeapModel
import Inspect
import Snapshot

public extension SnapshotDiff {
    static func signed(_ v: Int64) -> String { v > 0 ? "+\(v)" : String(v) }
    /// "+1.5 MiB", "-12 KiB", "0 B".
    static func signedHuman(_ v: Int64) -> String { (v > 0 ? "+" : v < 0 ? "-" : "") + human(v.magnitude) }
    /// A cause's value in its unit: bytes human-readable, counts as they are.
    static func amount(_ v: Int64, _ unit: String, signed: Bool = false) -> String {
        unit == "bytes" ? (signed ? signedHuman(v) : (v < 0 ? "-" : "") + human(v.magnitude)) : (signed ? SnapshotDiff.signed(v) : String(v))
    }

    func text(into out: inout OutputBuffer, limit: Int, a: String, b: String, _ sa: Snapshot, _ sb: Snapshot) {
        func who(_ s: Snapshot) -> String { "pid \(s.report.pid) (\(s.value("exe") ?? "?")), \(s.report.chunks.count) chunks" }
        out.write("A: \(a): \(who(sa))\nB: \(b): \(who(sb))\n")
        for (k, v) in sb.meta where k.hasPrefix("build_id:") {
            if let old = sa.value(k), old != v { out.write("note: \(k.dropFirst(9)) is another build in B (build-id \(old) -> \(v))\n") }
        }
        out.write("chunks: new in B \(new.count) (\(human(new.bytes))), gone since A \(gone.count) (\(human(gone.bytes))), survivors \(survivors.count) (\(human(survivors.bytes)))")
        out.write(changed.map { ", \($0) of them with changed contents\n" } ?? "\n")
        out.write("\ngrowth by cause                              \(pad("A", 14)) \(pad("B", 14)) \(pad("change", 14))\n")
        for c in causes {
            let name = c.name
            out.write("  \(pad(name, 43, left: true)) \(pad(SnapshotDiff.amount(c.a, c.unit), 14)) \(pad(SnapshotDiff.amount(c.b, c.unit), 14)) \(pad(SnapshotDiff.amount(c.b - c.a, c.unit, signed: true), 14))\n")
        }
        if sb.report.heap.exitedThreads == nil { out.write("  (exited threads: this glibc's thread descriptors are not known)\n") }
        out.write("\nby \(by), largest growth first\(groups.count > limit ? " (\(limit) of \(groups.count))" : ""):\n")
        out.write("\(pad("A chunks", 10)) \(pad("A bytes", 12)) \(pad("B chunks", 10)) \(pad("B bytes", 12)) \(pad("chunks", 9)) \(pad("bytes", 12))  \(by)\n")
        for g in groups.prefix(limit) {
            out.write("\(pad(String(g.a.count), 10)) \(pad(human(g.a.bytes), 12)) \(pad(String(g.b.count), 10)) \(pad(human(g.b.bytes), 12)) ")
            out.write("\(pad(SnapshotDiff.signed(Int64(g.b.count) - Int64(g.a.count)), 9)) \(pad(SnapshotDiff.signedHuman(Int64(g.b.bytes) - Int64(g.a.bytes)), 12))  \(g.key)\n")
        }
    }

    func json(into j: inout JSONWriter, limit: Int, a: String, b: String) {
        func t(_ k: StaticString, _ x: Tally, _ o: inout JSONWriter) { o.object(k) { $0.field("chunks", x.count); $0.field("bytes", x.bytes) } }
        j.document { o in
            o.field("a", a); o.field("b", b); o.field("by", by.rawValue)
            t("new", new, &o); t("gone", gone, &o); t("survivors", survivors, &o)
            o.field("changed", changed)
            o.array("causes") { list in
                for c in causes {
                    list.object { $0.field("id", c.id); $0.field("cause", c.name); $0.field("unit", c.unit); $0.field("a", c.a); $0.field("b", c.b); $0.field("change", c.b - c.a) }
                }
            }
            o.array("groups") { list in
                for g in groups.prefix(limit) {
                    list.object { x in
                        x.field("key", g.key); t("a", g.a, &x); t("b", g.b, &x)
                        x.field("change_chunks", Int64(g.b.count) - Int64(g.a.count)); x.field("change_bytes", Int64(g.b.bytes) - Int64(g.a.bytes))
                    }
                }
            }
        }
        j.endLine()
    }
}

public enum DiffFormat {
    public static func write(_ r: DiffResult, limit: Int, json: Bool) {
        if json { var j = JSONWriter(); r.diff.json(into: &j, limit: limit, a: r.pathA, b: r.pathB); j.flush() }
        else { var out = OutputBuffer(); r.diff.text(into: &out, limit: limit, a: r.pathA, b: r.pathB, r.a, r.b); out.flush() }
    }
}
