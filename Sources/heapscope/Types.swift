import ArgumentParser
import Glibc
import HeapModel
import Inspect
import ProcessAccess
import Symbols

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
        let r = try target.attach { pid, o throws(InspectError) in try Inspector.types(pid: pid, options: o) }
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

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One chunk: header, state, type, its words interpreted (pointers to chunks and symbols), a hex dump.")
    @OptionGroup var target: TargetOptions
    @Argument(help: "An address inside the chunk (hex, with or without 0x).") var address: String
    @Option(help: "Show at most this many bytes of the chunk.") var bytes = 256

    func run() throws {
        let a = try addressArgument(address)
        let o = target.options
        let r = try target.attach { pid, o throws(InspectError) in try Inspector.types(pid: pid, options: o) }
        let t = r.heap.chunks
        guard let i = t.index(containing: a) else {
            FileHandleErr.write("heapscope: \(hex(a)) is not in the heap (no chunk holds it)\n"); throw ExitCode(1)
        }
        let user = t.userAddress(i), usable = t.usableSize(i)
        let block = r.blocks.block(containing: user)
        let type = block.flatMap { r.label[$0] >= 0 ? (r.names[Int(r.label[$0])], r.confidence[Int(r.label[$0])].rawValue) : nil }
        let n = Int(min(usable, UInt64(max(bytes, 0))))
        let content = r.memory.bytes(user, count: n) ?? []
        // Words: pointers into chunks (with their type), into modules (symbols), or text.
        var words: [(offset: Int, value: UInt64)] = []
        var off = 0
        while off + 8 <= content.count {
            words.append((off, content[off..<off + 8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }))
            off += 8
        }
        let maps = (try? ProcFS.maps(pid: target.pid)) ?? []
        let inModule = words.filter { w in maps.contains { $0.path.hasPrefix("/") && $0.contains(w.value) } }.map(\.value)
        var symbols: [UInt64: String] = [:]
        if !inModule.isEmpty, let s = try? SymbolSession(pid: target.pid, useDebugInfo: o.useDebugInfo) {
            for (v, res) in zip(inModule, s.resolve(inModule)) {
                if let sym = res.symbol { symbols[v] = res.offset == 0 ? sym : "\(sym)+0x\(String(res.offset, radix: 16))" }
            }
        }
        func meaning(_ v: UInt64) -> String? {
            if let s = symbols[v] { return s }
            if let j = t.index(containing: v), t.state[j] != .top {
                let u = t.userAddress(j)
                let ty = r.blocks.block(containing: v).flatMap { r.label[$0] >= 0 ? " " + r.names[Int(r.label[$0])] : nil } ?? ""
                return "chunk \(hex(u))\(v == u ? "" : " +0x" + String(v &- u, radix: 16)) (\(t.state[j].name)\(ty))"
            }
            return nil
        }
        var out = OutputBuffer()
        if target.json {
            out.write("{\"address\":\"\(hex(a))\",\"chunk\":\"\(hex(t.address[i]))\",\"user_address\":\"\(hex(user))\",\"size\":\(t.size[i])"
                      + ",\"usable_size\":\(usable),\"state\":\"\(t.state[i].name)\",\"type\":\(type.map { jsonString($0.0) } ?? "null")"
                      + ",\"confidence\":\(type.map { jsonString($0.1) } ?? "null"),\"words\":[")
            for (k, w) in words.enumerated() {
                out.write((k > 0 ? "," : "") + "{\"offset\":\(w.offset),\"value\":\"\(hex(w.value))\",\"points_to\":\(meaning(w.value).map(jsonString) ?? "null")}")
            }
            out.write("]}\n")
        } else {
            out.write("chunk \(hex(t.address[i])): \(t.size[i]) bytes, \(t.state[i].name), user \(hex(user)) (\(usable) usable)")
            out.write(type.map { ", type \($0.0) (\($0.1))\n" } ?? ", type unknown\n")
            for w in words {
                guard let m = meaning(w.value) else { continue }
                out.write("  +0x\(pad(String(w.offset, radix: 16), 3, left: true)) \(hex(w.value)) -> \(m)\n")
            }
            let hexd = Array("0123456789abcdef")
            var line = 0
            while line < content.count {
                let row = content[line..<min(line + 16, content.count)]
                var h = "", s = ""
                for (k, x) in row.enumerated() {
                    if k == 8 { h += " " }
                    h.append(hexd[Int(x >> 4)]); h.append(hexd[Int(x & 15)]); h += " "
                    s.append(x >= 0x20 && x < 0x7f ? Character(UnicodeScalar(x)) : ".")
                }
                out.write("  \(hex(user + UInt64(line)))  \(pad(h, 49, left: true)) |\(s)|\n")
                line += 16
            }
            if UInt64(n) < usable { out.write("  ... \(usable - UInt64(n)) more bytes (--bytes)\n") }
        }
        out.flush()
    }
}
