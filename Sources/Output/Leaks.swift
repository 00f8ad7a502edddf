import Analysis
import Glibc
import HeapModel
import Inspect
import ProcessAccess
import Symbols

/// Lost chunks of one class and size whose words point to the same symbols.
public struct LeakGroup {
    public var leakClass: LeakClass
    public var size: UInt64
    public var signature: [String]      // "+0x0 -> symbol" for words pointing into modules; "text" for a printable start
    public var type: String?            // the type label of its chunks
    public var confidence: TypeConfidence = .unknown
    public var count = 0
    public var samples: [Int] = []      // the first few blocks
    public var bytes: UInt64 { size * UInt64(count) }
}

public enum LeakGroups {
    /// Groups of the blocks in `classes`: by class, size and signature (the symbols its first 64
    /// bytes point to, or "text" when it starts with printable bytes). One pass over the blocks;
    /// symbols are looked up once per distinct pointer value.
    /// From a snapshot file (no symbols, no mappings) pointer signatures are not formed.
    public static func build(_ r: LeakInspection, classes: Set<LeakClass>) -> [LeakGroup] {
        let b = r.leaks.blocks, cls = r.leaks.leakClass
        let want = LeakClass.allCases.map { classes.contains($0) }
        // Words that point into a file-backed mapping (code, vtables, globals) get a symbol.
        // (and the .bss tail: the anonymous mapping right after a module's file mappings)
        let maps = r.maps
        let modules = zip([nil] + maps.map { Optional($0) }, maps)
            .filter { prev, m in m.path.hasPrefix("/") || m.isBSSTail(after: prev) }
            .map { ($0.1.start, $0.1.end) }
        let lo = modules.first?.0 ?? 0, hi = modules.last?.1 ?? 0
        func inModule(_ w: UInt64) -> Bool {
            guard w >= lo && w < hi else { return false }
            var l = 0, h = modules.count
            while l < h { let m = (l + h) >> 1; if modules[m].1 <= w { l = m + 1 } else { h = m } }
            return l < modules.count && w >= modules[l].0
        }
        struct Key: Hashable { var cls: UInt8; var size: UInt64; var sig: Int32; var type: Int32 }
        let typeGroups = r.types?.groups()
        let groupOf = typeGroups?.of ?? []
        var pointerSets: [[UInt64]: Int32] = [:]     // (offset, value) pairs -> signature id
        var sigPointers: [[UInt64]] = []
        let textSig: Int32 = -2
        var index: [Key: Int] = [:]
        var found: [(key: Key, count: Int, samples: [Int])] = []
        var last: (key: Key, at: Int)? = nil
        var region: Region? = nil
        for k in 0..<b.count where want[Int(cls[k].rawValue)] {
            let start = b.start[k], size = b.end[k] - start
            if region == nil || !region!.contains(start, min(size, 64)) { region = r.memory.region(containing: start, length: min(size, 64)) }
            var sig: Int32 = -1
            if let reg = region {
                let base = reg.base + Int(start - reg.start)
                var found: [UInt64] = []
                var off = 0
                while off + 8 <= min(Int(size), 64) {
                    let w = base.loadUnaligned(fromByteOffset: off, as: UInt64.self)
                    if w > 4096 && inModule(w) { found.append(UInt64(off)); found.append(w) }
                    off += 8
                }
                if !found.isEmpty {
                    if let id = pointerSets[found] { sig = id } else {
                        sig = Int32(sigPointers.count); pointerSets[found] = sig; sigPointers.append(found)
                    }
                } else if size >= 4 {
                    var printable = true
                    for i in 0..<4 { let c = base.load(fromByteOffset: i, as: UInt8.self); if c < 0x20 || c >= 0x7f { printable = false } }
                    if printable { sig = textSig }
                }
            }
            let key = Key(cls: cls[k].rawValue, size: size, sig: sig, type: groupOf.isEmpty ? -1 : groupOf[k])
            let at: Int
            if let l = last, l.key == key { at = l.at } else if let i = index[key] { at = i } else {
                at = found.count; index[key] = at; found.append((key, 0, []))
            }
            last = (key, at)
            found[at].count += 1
            if found[at].samples.count < 3 { found[at].samples.append(k) }
        }
        // Symbols for the pointer values of the signatures.
        var names: [UInt64: String] = [:]
        let values = Array(Set(sigPointers.flatMap { p in stride(from: 1, to: p.count, by: 2).map { p[$0] } }))
        if !values.isEmpty, let session = r.symbols {
            for (v, res) in zip(values, session.resolve(values)) {
                if let s = res.symbol { names[v] = res.offset == 0 ? s : "\(s)+0x\(String(res.offset, radix: 16))" }
            }
        }
        func signature(_ id: Int32) -> [String] {
            if id == textSig { return ["text"] }
            guard id >= 0 else { return [] }
            let p = sigPointers[Int(id)]
            return stride(from: 0, to: p.count, by: 2).map { "+0x\(String(p[$0], radix: 16)) -> \(names[p[$0 + 1]] ?? hex(p[$0 + 1]))" }
        }
        return found.map { LeakGroup(leakClass: LeakClass(rawValue: $0.key.cls)!, size: $0.key.size, signature: signature($0.key.sig),
                                     type: $0.key.type >= 0 ? typeGroups?.name($0.key.type) : nil,
                                     confidence: $0.key.type >= 0 ? typeGroups!.confidence[Int($0.key.type)] : .unknown,
                                     count: $0.count, samples: $0.samples) }
            .sorted { ($0.bytes, $1.leakClass.rawValue, $1.size) > ($1.bytes, $0.leakClass.rawValue, $0.size) }
    }
}

public enum LeakFormat {
    public static let order: [LeakClass] = [.definitelyLost, .indirectlyLost, .possiblyLost, .stillReachable]

    public static func preview(_ m: MemoryImage, _ a: UInt64, _ n: UInt64) -> (hex: String, ascii: String) {
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

    public static func text(_ r: LeakInspection, groups: [LeakGroup], total: Int, into out: inout OutputBuffer) {
        let roots = RootKind.allCases.compactMap { k in r.rootBytes[k].map { "\(k.rawValue) \(human($0))" } }.joined(separator: ", ")
        out.write("pid \(r.heap.pid): \(pausedText(r.heap)); roots: \(roots)\n")
        if let c = copyText(r.heap) { out.write(c + "\n") }
        for c in order {
            let t = r.leaks.tallies[c] ?? Tally()
            out.write("  \(pad(c.words + ":", 17, left: true)) \(pad(String(t.bytes), 12)) bytes in \(pad(String(t.count), 9)) chunks\n")
        }
        if groups.isEmpty { return }
        out.write("\n\(total) group\(total == 1 ? "" : "s") (class, size, type, what the chunk points to), largest first\(groups.count < total ? "; showing \(groups.count)" : ""):\n")
        for g in groups {
            out.write("\(g.leakClass.name): \(g.count) chunk\(g.count == 1 ? "" : "s") of \(g.size) bytes = \(g.bytes) bytes")
            if let t = g.type { out.write("; type \(t) (\(g.confidence.name))") }
            out.write(g.signature.isEmpty ? "\n" : "; " + g.signature.joined(separator: ", ") + "\n")
            for k in g.samples {
                let a = r.leaks.blocks.start[k]
                let p = preview(r.memory, a, g.size)
                out.write("    \(hex(a))  \(p.hex)  |\(p.ascii)|\n")
            }
        }
    }

    public static func json(_ r: LeakInspection, groups: [LeakGroup], into out: inout OutputBuffer) {
        out.write("{\"pid\":\(r.heap.pid),\"pause_us\":\(r.heap.pauseMicroseconds),\"scanned_bytes\":\(r.leaks.scannedBytes)" + copyJSON(r.heap))
        for c in order {
            let t = r.leaks.tallies[c] ?? Tally()
            out.write(",\"\(c.name)\":{\"chunks\":\(t.count),\"bytes\":\(t.bytes)}")
        }
        out.write(",\"roots\":{" + RootKind.allCases.compactMap { k in r.rootBytes[k].map { "\"\(k.rawValue)\":\($0)" } }.joined(separator: ",") + "}")
        out.write(",\"groups\":[")
        for (i, g) in groups.enumerated() {
            if i > 0 { out.write(",") }
            out.write("{\"class\":\"\(g.leakClass.name)\",\"size\":\(g.size),\"count\":\(g.count),\"bytes\":\(g.bytes)")
            out.write(",\"type\":\(g.type.map(jsonString) ?? "null"),\"confidence\":\"\(g.confidence.name)\"")
            out.write(",\"signature\":[" + g.signature.map(jsonString).joined(separator: ",") + "],\"samples\":[")
            for (j, k) in g.samples.enumerated() {
                let a = r.leaks.blocks.start[k]
                let p = preview(r.memory, a, g.size)
                out.write((j > 0 ? "," : "") + "{\"address\":\"\(hex(a))\",\"hex\":\(jsonString(p.hex)),\"ascii\":\(jsonString(p.ascii))}")
            }
            out.write("]}")
        }
        out.write("]}\n")
    }
}

/// Symbols of the root word's address and of the values the chain holds.
public struct WhyNames {
    public var rootSymbol: Resolution?
    public var definition: (file: String, line: Int)?
    /// For a stack root: the function of the frame whose part of the stack holds the word.
    public var frame: String?
    public init(_ r: LeakInspection, chain: ReferenceChain?) {
        guard let c = chain, case .memory(let root, let addr) = c.root, root >= 0, let s = r.symbols else { return }
        if r.roots[root].kind == .stack, let t = r.registers.first(where: { "thread \($0.tid) stack" == r.roots[root].label }) {
            // (every thread: the session unwinds once, and keeps the stacks)
            let frames = s.unwind(threads: r.registers.map { ($0.tid, $0.words) }, read: { r.memory.word($0) })[t.tid] ?? []
            for k in frames.indices where frames[k].sp != 0 && frames[k].sp <= addr && k + 1 < frames.count && addr < frames[k + 1].sp {
                let f = frames[k]
                let res = s.resolve([f.isActivation ? f.pc : f.pc - 1])[0]
                frame = res.symbol.map { "in \($0)" + (res.frames.first.map { f in " at \(basename(f.file ?? "?")):\(f.line)" } ?? "") }
                    ?? "in frame #\(k) (pc \(hex(f.pc)))"
                break
            }
            if frame == nil, let last = frames.last, last.sp != 0, addr >= last.sp {
                frame = "above the last of \(frames.count) unwound frames"
            }
            return
        }
        guard r.roots[root].kind == .moduleData || r.roots[root].kind == .tls else { return }
        let res = s.resolve([addr])[0]
        if res.symbol != nil {
            rootSymbol = res
            definition = s.variableDefinition(at: addr - res.offset)
        }
    }
}

public enum WhyFormat {
    public static func rootText(_ r: LeakInspection, _ c: ReferenceChain, _ names: WhyNames) -> (kind: String, text: String) {
        switch c.root {
        case .register(let t, let i):
            return ("register", "thread \(r.registers[t].tid) register \(RegisterSet.names[i])")
        case .memory(let k, let a) where k < 0:
            return ("chunk", "definitely lost chunk \(hex(a))")
        case .memory(let k, let a):
            let root = r.roots[k]
            switch root.kind {
            case .stack:
                let sp = r.registers.first { "thread \($0.tid) stack" == root.label }?.words[19] ?? root.start
                return ("stack", "\(root.label) at \(hex(a)) (sp\(a >= sp ? "+" : "-")0x\(String(a >= sp ? a - sp : sp - a, radix: 16))\(names.frame.map { ", " + $0 } ?? ""))")
            case .moduleData, .tls:
                if let s = names.rootSymbol, let sym = s.symbol {
                    let what = sym + (s.offset > 0 ? "+0x\(String(s.offset, radix: 16))" : "")
                    let def = names.definition.map { ", \(basename($0.file)):\($0.line)" } ?? ""
                    return (root.kind.rawValue, "\(what) (\(s.type.map(String.init) ?? "?") in \(s.module ?? root.label)\(def)) at \(hex(a))")
                }
                return (root.kind.rawValue, "\(root.label) at \(hex(a))")
            default:
                return (root.kind.rawValue, "\(root.label) \(hex(root.start))-\(hex(root.end)) at \(hex(a))")
            }
        }
    }

    public static func text(_ r: LeakInspection, _ a: UInt64, _ k: Int, _ chain: ReferenceChain?, _ reason: String?, _ names: WhyNames,
                     into out: inout OutputBuffer) {
        let b = r.leaks.blocks
        out.write("\(hex(a)) is in chunk \(hex(b.start[k])) (\(b.end[k] - b.start[k]) bytes), \(r.leaks.leakClass[k].words)")
        out.write(reason.map { ": \($0)\n" } ?? "\n")
        guard let c = chain else { return }
        func pointee(_ v: UInt64) -> String {
            guard let t = b.block(containing: v) else { return "" }
            return v == b.start[t] ? "" : " (interior pointer, +0x\(String(v - b.start[t], radix: 16)))"
        }
        out.write("  \(rootText(r, c, names).text) holds \(hex(c.rootValue))\(pointee(c.rootValue))\n")
        for h in c.hops {
            out.write("  -> chunk \(hex(b.start[h.block])) (\(b.end[h.block] - b.start[h.block]) bytes) +0x\(String(h.offset, radix: 16)) holds \(hex(h.value))\(pointee(h.value))\n")
        }
        out.write("  -> chunk \(hex(b.start[k])) (\(b.end[k] - b.start[k]) bytes)\n")
    }

    public static func json(_ r: LeakInspection, _ a: UInt64, _ k: Int, _ chain: ReferenceChain?, _ reason: String?, _ names: WhyNames,
                     into out: inout OutputBuffer) {
        let b = r.leaks.blocks
        out.write("{\"address\":\"\(hex(a))\",\"chunk\":\"\(hex(b.start[k]))\",\"size\":\(b.end[k] - b.start[k]),\"class\":\"\(r.leaks.leakClass[k].name)\"")
        out.write(",\"chain\":")
        if let c = chain {
            let (kind, text) = rootText(r, c, names)
            var items = ["{\"kind\":\(jsonString(kind)),\"description\":\(jsonString(text)),\"value\":\"\(hex(c.rootValue))\""
                + (names.rootSymbol?.symbol.map { ",\"symbol\":\(jsonString($0))" } ?? "")
                + (names.rootSymbol?.module.map { ",\"module\":\(jsonString($0))" } ?? "")
                + (names.definition.map { ",\"file\":\(jsonString($0.file)),\"line\":\($0.line)" } ?? "")
                + (names.frame.map { ",\"frame\":\(jsonString($0))" } ?? "") + "}"]
            for h in c.hops {
                items.append("{\"kind\":\"chunk\",\"chunk\":\"\(hex(b.start[h.block]))\",\"offset\":\(h.offset),\"value\":\"\(hex(h.value))\"}")
            }
            out.write("[" + items.joined(separator: ",") + "]")
        } else { out.write("null") }
        out.write(",\"reason\":" + (reason.map(jsonString) ?? "null") + "}\n")
    }
}
