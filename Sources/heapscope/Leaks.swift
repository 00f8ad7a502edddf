import Analysis
import ArgumentParser
import Glibc
import HeapModel
import Inspect
import ProcessAccess
import Symbols

struct Leaks: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Outstanding chunks nothing can reach any more, classified as Valgrind memcheck does.",
        discussion: """
        Stops the target once (the pause is printed) to copy its heap and every other writable \
        mapping, detaches, and scans conservatively from the roots: every thread's registers and \
        stack (from the stack pointer less the red zone), static TLS, the writable data of every \
        module, and other writable anonymous memory malloc does not own (--no-anonymous-roots \
        leaves those out). malloc's own metadata is never a root.

        Classes: still_reachable (a chain of pointers to chunk starts leads to it from a root), \
        possibly_lost (only chains through interior pointers do), definitely_lost (nothing \
        points to it from roots or reachable chunks), indirectly_lost (only lost chunks point \
        to it). Groups: lost chunks of one size whose words point to the same symbols.
        """)
    @OptionGroup var target: TargetOptions
    @Option(help: "Also list groups of this class: reachable (still_reachable) or possible (possibly_lost is listed anyway).")
    var show: String?
    @Flag(help: "Do not count writable anonymous memory outside malloc (custom pools, mmaps) as roots.")
    var noAnonymousRoots = false
    @Option(help: "List at most this many groups.") var limit = 20

    func validate() throws {
        if let s = show, s != "reachable" && s != "possible" { throw ValidationError("--show takes 'reachable' or 'possible'") }
        if limit < 0 { throw ValidationError("--limit must be >= 0") }
    }

    func run() throws {
        var o = InspectOptions()
        if target.noDebuginfo { o.useDebugInfo = false }
        let r: LeakInspection
        do { r = try Inspector.leaks(pid: target.pid, options: o, anonymousRoots: !noAnonymousRoots) } catch {
            FileHandleErr.write("heapscope: \(error.description)\n")
            throw ExitCode(error.exitCode)
        }
        var classes: Set<LeakClass> = [.definitelyLost, .indirectlyLost, .possiblyLost]
        if show == "reachable" { classes.insert(.stillReachable) }
        let groups = LeakGroups.build(r, classes: classes, pid: target.pid, useDebugInfo: o.useDebugInfo)
        var out = OutputBuffer()
        if target.json { LeakFormat.json(r, groups: Array(groups.prefix(limit)), into: &out) }
        else { LeakFormat.text(r, groups: Array(groups.prefix(limit)), total: groups.count, into: &out) }
        out.flush()
        try finish(r.heap)
    }
}

/// Lost chunks of one class and size whose words point to the same symbols.
struct LeakGroup {
    var leakClass: LeakClass
    var size: UInt64
    var signature: [String]      // "+0x0 -> symbol" for words pointing into modules; "text" for a printable start
    var blocks: [Int] = []
    var bytes: UInt64 { size * UInt64(blocks.count) }
}

enum LeakGroups {
    static func build(_ r: LeakInspection, classes: Set<LeakClass>, pid: Int32, useDebugInfo: Bool) -> [LeakGroup] {
        let L = r.leaks, b = L.blocks
        let chosen = (0..<b.count).filter { classes.contains(L.leakClass[$0]) }
        // Words that point into a file-backed mapping (code, vtables, globals) get a symbol.
        let modules = ((try? ProcFS.maps(pid: pid)) ?? []).filter { $0.path.hasPrefix("/") }.map { ($0.start, $0.end) }
        func inModule(_ w: UInt64) -> Bool { modules.contains { w >= $0.0 && w < $0.1 } }
        var pointers: [(block: Int, offset: UInt64, value: UInt64)] = []
        for k in chosen {
            var a = b.start[k]
            let end = min(b.end[k], b.start[k] + 256)   // the first 256 bytes say what a chunk is
            while a + 8 <= end {
                if let w = r.memory.word(a), w > 4096, inModule(w) { pointers.append((k, a - b.start[k], w)) }
                a += 8
            }
        }
        var names: [UInt64: String] = [:]
        if !pointers.isEmpty, let session = try? SymbolSession(pid: pid, useDebugInfo: useDebugInfo) {
            let values = Array(Set(pointers.map(\.value)))
            for (v, res) in zip(values, session.resolve(values)) {
                if let s = res.symbol { names[v] = res.offset == 0 ? s : "\(s)+0x\(String(res.offset, radix: 16))" }
            }
        }
        var sig: [Int: [String]] = [:]
        for p in pointers { if let n = names[p.value] { sig[p.block, default: []].append("+0x\(String(p.offset, radix: 16)) -> \(n)") } }
        var groups: [String: LeakGroup] = [:]
        for k in chosen {
            let size = b.end[k] - b.start[k]
            var s = sig[k] ?? []
            if s.isEmpty, let bytes = r.memory.bytes(b.start[k], count: Int(min(size, 8))), bytes.count >= 4,
               bytes.prefix(4).allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) { s = ["text"] }
            let key = "\(L.leakClass[k].rawValue) \(size) " + s.joined(separator: ";")
            groups[key, default: LeakGroup(leakClass: L.leakClass[k], size: size, signature: s)].blocks.append(k)
        }
        return groups.values.sorted { ($0.bytes, $1.leakClass.rawValue, $1.size) > ($1.bytes, $0.leakClass.rawValue, $0.size) }
    }
}

enum LeakFormat {
    static let order: [LeakClass] = [.definitelyLost, .indirectlyLost, .possiblyLost, .stillReachable]

    static func preview(_ m: MemoryImage, _ a: UInt64, _ n: UInt64) -> (hex: String, ascii: String) {
        let bytes = m.bytes(a, count: Int(min(n, 32))) ?? []
        let hexDigits = Array("0123456789abcdef")
        var hex = "", ascii = ""
        for (i, x) in bytes.enumerated() {
            if i > 0 && i % 8 == 0 { hex += " " }
            hex.append(hexDigits[Int(x >> 4)]); hex.append(hexDigits[Int(x & 15)])
            ascii.append(x >= 0x20 && x < 0x7f ? Character(UnicodeScalar(x)) : ".")
        }
        return (hex, ascii)
    }

    static func text(_ r: LeakInspection, groups: [LeakGroup], total: Int, into out: inout OutputBuffer) {
        let ms = Double(r.heap.pauseMicroseconds) / 1000
        let roots = RootKind.allCases.compactMap { k in r.rootBytes[k].map { "\(k.rawValue) \(human($0))" } }.joined(separator: ", ")
        out.write("pid \(r.heap.pid): paused \(format1(ms < 10 ? (ms * 100).rounded() / 100 : ms)) ms; roots: \(roots)\n")
        for c in order {
            let t = r.leaks.tallies[c] ?? Tally()
            out.write("  \(pad(c.name.replacingUnderscores() + ":", 17, left: true)) \(pad(String(t.bytes), 12)) bytes in \(pad(String(t.count), 9)) chunks\n")
        }
        if groups.isEmpty { return }
        out.write("\n\(total) group\(total == 1 ? "" : "s") (class, size, what the chunk points to), largest first\(groups.count < total ? "; showing \(groups.count)" : ""):\n")
        for g in groups {
            out.write("\(g.leakClass.name): \(g.blocks.count) chunk\(g.blocks.count == 1 ? "" : "s") of \(g.size) bytes = \(g.bytes) bytes")
            out.write(g.signature.isEmpty ? "\n" : "; " + g.signature.joined(separator: ", ") + "\n")
            for k in g.blocks.prefix(3) {
                let a = r.leaks.blocks.start[k]
                let p = preview(r.memory, a, g.size)
                out.write("    \(hex(a))  \(p.hex)  |\(p.ascii)|\n")
            }
        }
    }

    static func json(_ r: LeakInspection, groups: [LeakGroup], into out: inout OutputBuffer) {
        out.write("{\"pid\":\(r.heap.pid),\"pause_us\":\(r.heap.pauseMicroseconds)")
        for c in order {
            let t = r.leaks.tallies[c] ?? Tally()
            out.write(",\"\(c.name)\":{\"chunks\":\(t.count),\"bytes\":\(t.bytes)}")
        }
        out.write(",\"roots\":{" + RootKind.allCases.compactMap { k in r.rootBytes[k].map { "\"\(k.rawValue)\":\($0)" } }.joined(separator: ",") + "}")
        out.write(",\"groups\":[")
        for (i, g) in groups.enumerated() {
            if i > 0 { out.write(",") }
            out.write("{\"class\":\"\(g.leakClass.name)\",\"size\":\(g.size),\"count\":\(g.blocks.count),\"bytes\":\(g.bytes)")
            out.write(",\"signature\":[" + g.signature.map(jsonString).joined(separator: ",") + "],\"samples\":[")
            for (j, k) in g.blocks.prefix(3).enumerated() {
                let a = r.leaks.blocks.start[k]
                let p = preview(r.memory, a, g.size)
                out.write((j > 0 ? "," : "") + "{\"address\":\"\(hex(a))\",\"hex\":\(jsonString(p.hex)),\"ascii\":\(jsonString(p.ascii))}")
            }
            out.write("]}")
        }
        out.write("]}\n")
    }
}

extension String {
    func replacingUnderscores() -> String { String(map { $0 == "_" ? " " : $0 }) }
}
