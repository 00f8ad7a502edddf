import ArgumentParser
import Glibc
import HeapModel
import Inspect

struct Types: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Outstanding chunks by type: count, bytes, share, and how the type is known.",
        discussion: """
        Types come from the chunks' contents so far: a C++ object by the vtable its first word \
        points into ("vtable for X": confidence vtable), a NUL-terminated printable string as \
        char[] (heuristic); the rest is unknown. Declared types from DWARF (globals, TLS, stack \
        locals, pointer members) are not propagated yet.
        """)
    @OptionGroup var target: TargetOptions
    @Option(help: "Only chunks in this state: in_use or mmapped.") var state: String?

    func validate() throws {
        if let s = state, s != "in_use" && s != "mmapped" { throw ValidationError("--state takes in_use or mmapped") }
    }

    func run() throws {
        var o = InspectOptions()
        if target.noDebuginfo { o.useDebugInfo = false }
        let r: TypeInspection
        do { r = try Inspector.types(pid: target.pid, options: o) } catch {
            FileHandleErr.write("heapscope: \(error.description)\n"); throw ExitCode(error.exitCode)
        }
        let b = r.blocks, table = r.heap.chunks
        var count = [Int](repeating: 0, count: r.names.count + 1), bytes = [UInt64](repeating: 0, count: r.names.count + 1)
        var total: UInt64 = 0
        for k in 0..<b.count {
            if let s = state, table.state[Int(b.chunk[k])].name != s { continue }
            let i = r.label[k] < 0 ? r.names.count : Int(r.label[k])
            count[i] += 1; bytes[i] += b.end[k] - b.start[k]; total += b.end[k] - b.start[k]
        }
        let rows = (0...r.names.count).filter { count[$0] > 0 }.sorted { (bytes[$0], count[$0]) > (bytes[$1], count[$1]) }
        func name(_ i: Int) -> String { i == r.names.count ? "(unknown)" : r.names[i] }
        func conf(_ i: Int) -> String { i == r.names.count ? TypeConfidence.unknown.rawValue : r.confidence[i].rawValue }
        var out = OutputBuffer()
        if target.json {
            out.write("{\"pid\":\(r.heap.pid),\"pause_us\":\(r.heap.pauseMicroseconds),\"bytes\":\(total),\"types\":[")
            for (n, i) in rows.enumerated() {
                out.write((n > 0 ? "," : "") + "{\"type\":\(jsonString(name(i))),\"confidence\":\"\(conf(i))\",\"chunks\":\(count[i]),\"bytes\":\(bytes[i])}")
            }
            out.write("]}\n")
        } else {
            let ms = Double(r.heap.pauseMicroseconds) / 1000
            out.write("pid \(r.heap.pid): paused \(format1(ms < 10 ? (ms * 100).rounded() / 100 : ms)) ms; \(human(total)) outstanding\n")
            out.write("\(pad("chunks", 10)) \(pad("bytes", 12))  share  confidence  type\n")
            for i in rows {
                let share = total > 0 ? Double(bytes[i]) * 100 / Double(total) : 0
                out.write("\(pad(String(count[i]), 10)) \(pad(String(bytes[i]), 12)) \(pad(format1(share) + "%", 6))  \(pad(conf(i), 10, left: true))  \(name(i))\n")
            }
        }
        out.flush()
    }
}
