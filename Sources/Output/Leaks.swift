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
    /// Every chunk of the group (user addresses), when asked for (`leaks --addresses`).
    public var addresses: [UInt64]? = nil
    public var bytes: UInt64 { size * UInt64(count) }
}

/// Leak groups of some of the blocks, as one pass makes them (see `LeakGroups.build`).
struct GroupPass {
    struct Key: Hashable { var cls: UInt8; var size: UInt64; var sig: Int32; var type: Int32 }
    // Per group: key, chunks, first few blocks (separate arrays: the pass sees every block).
    var keys: [Key] = [], counts: [Int] = [], samples: [[Int]] = [], all: [[UInt64]] = []
    /// Per signature id: its (offset, value) pairs.
    var sigPointers: [[UInt64]] = []

    /// `later`'s groups, made from the blocks after these, added as one pass over both would:
    /// signatures and groups first seen there numbered after these, the first three samples kept.
    mutating func merge(_ later: GroupPass) {
        var sigID: [[UInt64]: Int32] = [:]
        for (i, p) in sigPointers.enumerated() { sigID[p] = Int32(i) }
        let renumber: [Int32] = later.sigPointers.map { p in
            if let id = sigID[p] { return id }
            let id = Int32(sigPointers.count); sigID[p] = id; sigPointers.append(p); return id
        }
        var index: [Key: Int] = [:]
        for (i, k) in keys.enumerated() { index[k] = i }
        for (j, var k) in later.keys.enumerated() {
            if k.sig >= 0 { k.sig = renumber[Int(k.sig)] }
            if let i = index[k] {
                counts[i] += later.counts[j]
                samples[i].append(contentsOf: later.samples[j].prefix(max(0, 3 - samples[i].count)))
                if !all.isEmpty { all[i].append(contentsOf: later.all[j]) }
            } else {
                index[k] = keys.count
                keys.append(k); counts.append(later.counts[j]); samples.append(later.samples[j])
                if !later.all.isEmpty { all.append(later.all[j]) }
            }
        }
    }
}

extension UInt32 {
    /// Each of its four bytes is printable ASCII (0x20...0x7e).
    @inline(__always) var isPrintableASCII: Bool {
        // (a byte is below 0x20 when subtracting 0x20 borrows; at or above 0x7f when adding 1 reaches 0x80)
        ((self &- 0x2020_2020) | (self &+ 0x0101_0101) | self) & 0x8080_8080 == 0
    }
}

public enum LeakGroups {
    /// The groups of every lost chunk (definitely, indirectly and possibly lost), and with
    /// `reachable` of the still reachable ones too.
    public static func build(_ r: LeakInspection, reachable: Bool, addresses: Bool = false) -> [LeakGroup] {
        build(r, classes: reachable ? Set(LeakClass.allCases) : [.definitelyLost, .indirectlyLost, .possiblyLost], addresses: addresses)
    }

    /// Groups of the blocks in `classes`: by class, size and signature (the symbols its first 64
    /// bytes point to, or "text" when it starts with printable bytes). One pass over the blocks;
    /// symbols are looked up once per distinct pointer value.
    /// From a snapshot file (no symbols, no mappings) pointer signatures are not formed.
    /// `splitAt`: the block where the second of two passes (on a thread of its own) starts; nil:
    /// at half the blocks when there are a million or more and two CPUs, else one pass.
    public static func build(_ r: LeakInspection, classes: Set<LeakClass>, addresses: Bool = false, splitAt: Int? = nil) -> [LeakGroup] {
        let trace = PhaseTrace()
        defer { trace.mark("leaks: groups") }
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
        let typeGroups = r.types?.groups()
        let groupOf = typeGroups?.of
        let textSig: Int32 = -2
        /// The groups of the blocks of `range`, in the order they are first seen, with their
        /// signatures numbered in the order they are first seen.
        func pass(_ range: Range<Int>) -> GroupPass {
            var g = GroupPass()
            var pointerSets: [[UInt64]: Int32] = [:]     // (offset, value) pairs -> signature id
            var index: [GroupPass.Key: Int] = [:]
            var cursor = RegionCursor(r.memory)   // (one per pass: two may run at once)
            // The run of consecutive blocks of one group being counted (added when it ends: most
            // blocks are counted without touching the arrays), and how many samples it still takes.
            var runKey = GroupPass.Key(cls: 0, size: 0, sig: 0, type: 0), runAt = -1, runCount = 0, runSamples = 0
            func endRun() { if runAt >= 0 { g.counts[runAt] += runCount; runCount = 0 } }
            withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 16) { pairs in
                cls.withUnsafeBufferPointer { cls in
                    for k in range where want[Int(cls[k].rawValue)] {
                        let start = b.userStart(k), size = b.userEnd(k) - start, head = min(size, 64)
                        var sig: Int32 = -1
                        if cursor.reach(start, head) {
                            let base = cursor.base! + Int(start - cursor.start)
                            var n = 0, off = 0
                            while off + 8 <= Int(head) {
                                let w = base.loadUnaligned(fromByteOffset: off, as: UInt64.self)
                                if w > 4096 && inModule(w) { pairs[n] = UInt64(off); pairs[n + 1] = w; n += 2 }
                                off += 8
                            }
                            if n > 0 {
                                let words = Array(pairs[0..<n])
                                if let id = pointerSets[words] { sig = id } else {
                                    sig = Int32(g.sigPointers.count); pointerSets[words] = sig; g.sigPointers.append(words)
                                }
                            } else if size >= 4 && base.loadUnaligned(as: UInt32.self).isPrintableASCII {
                                sig = textSig
                            }
                        }
                        let key = GroupPass.Key(cls: cls[k].rawValue, size: size, sig: sig, type: groupOf?[k] ?? -1)
                        if runAt < 0 || key != runKey {
                            endRun()
                            if let i = index[key] { runAt = i } else {
                                runAt = g.keys.count; index[key] = runAt; g.keys.append(key); g.counts.append(0); g.samples.append([])
                                if addresses { g.all.append([]) }
                            }
                            runKey = key
                            runSamples = max(0, 3 - g.counts[runAt])
                        }
                        if addresses { g.all[runAt].append(start) }
                        runCount += 1
                        if runSamples > 0 { g.samples[runAt].append(k); runSamples -= 1 }
                    }
                }
            }
            endRun()
            return g
        }
        // One pass per half, on two threads; the halves merged into what one pass over them all makes.
        let g: GroupPass
        let split = splitAt ?? (b.count >= 1 << 20 && BackgroundWork<Void>.secondCPU ? b.count / 2 : nil)
        if let split {
            let mid = min(max(split, 0), b.count)
            var second = BackgroundWork { pass(mid..<b.count) }
            var first = pass(0..<mid)
            first.merge(second.wait())
            g = first
        } else {
            g = pass(0..<b.count)
        }
        let keys = g.keys, counts = g.counts, samples = g.samples, all = g.all, sigPointers = g.sigPointers
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
        return keys.enumerated().map { n, key in
            LeakGroup(leakClass: LeakClass(rawValue: key.cls)!, size: key.size, signature: signature(key.sig),
                      type: key.type >= 0 ? typeGroups?.name(key.type) : nil,
                      confidence: key.type >= 0 ? typeGroups!.confidence[Int(key.type)] : .unknown,
                      count: counts[n], samples: samples[n], addresses: addresses ? all[n] : nil) }
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
            out.write("  \(pad(c.words + ":", 17, left: true)) \(pad(human(t.bytes), 10)) in \(pad(String(t.count), 9)) chunks\n")
        }
        if groups.isEmpty { return }
        out.write("\n\(total) group\(total == 1 ? "" : "s") (class, size, type, what the chunk points to), largest first\(groups.count < total ? "; showing \(groups.count)" : ""):\n")
        for g in groups {
            out.write("\(g.leakClass.name): \(g.count) chunk\(g.count == 1 ? "" : "s") of \(g.size) bytes usable = \(human(g.bytes))")
            if let t = g.type { out.write("; type \(t) (\(g.confidence.name))") }
            out.write(g.signature.isEmpty ? "\n" : "; " + g.signature.joined(separator: ", ") + "\n")
            for k in g.samples {
                let a = r.leaks.blocks.userStart(k)
                let p = preview(r.memory, a, g.size)
                out.write("    \(hex(a))  \(p.hex)  |\(p.ascii)|\n")
            }
            if let all = g.addresses {
                out.write("    every chunk:")
                for (i, a) in all.enumerated() { out.write(i % 6 == 0 ? "\n     " : ""); out.write(" \(hex(a))") }
                out.write("\n")
            }
        }
    }

    public static func json(_ r: LeakInspection, groups: [LeakGroup], into j: inout JSONWriter) {
        j.document { o in
            o.field("pid", r.heap.pid); o.field("pause_us", r.heap.pauseMicroseconds); o.field("scanned_bytes", r.leaks.scannedBytes)
            copyFields(r.heap, into: &o)
            for c in order {
                let t = r.leaks.tallies[c] ?? Tally()
                o.object(dynamic: c.name) { $0.field("chunks", t.count); $0.field("bytes", t.bytes) }
            }
            o.object("roots") { x in for k in RootKind.allCases { if let v = r.rootBytes[k] { x.field(dynamic: k.rawValue, v) } } }
            o.array("groups") { list in
                for g in groups {
                    list.object { x in
                        x.field("class", g.leakClass.name); x.field("usable", g.size); x.field("chunks", g.count); x.field("bytes", g.bytes)
                        x.field("type", g.type); x.field("confidence", g.confidence.name); x.field("signature", strings: g.signature)
                        x.array("samples") { a in
                            for k in g.samples {
                                let addr = r.leaks.blocks.userStart(k)
                                let p = preview(r.memory, addr, g.size)
                                a.object { $0.field("chunk", hex: addr); $0.field("hex", p.hex); $0.field("ascii", p.ascii) }
                            }
                        }
                        if let all = g.addresses { x.array("addresses") { a in for v in all { a.value(hex: v) } } }
                    }
                }
            }
            warningFields(r.heap, into: &o)
        }
        j.endLine()
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

    public static func text(_ w: WhyAnswer, into out: inout OutputBuffer) {
        let r = w.inspection, b = r.leaks.blocks, k = w.block
        let size = { (j: Int) in b.userEnd(j) - b.userStart(j) }
        if let path = w.typedPath {
            let g = r.types!.groups()
            out.write("\(hex(w.address)) is in chunk \(hex(b.userStart(k))) (\(size(k)) bytes usable, \(g.name(g.of[k]))), \(w.leakClass.words)")
            out.write("\n  \(path.owner) (typed root, as the snapshot recorded; offsets are not kept)\n")
            for j in path.blocks.dropLast() { out.write("  -> chunk \(hex(b.userStart(j))) (\(size(j)) bytes usable, \(g.name(g.of[j])))\n") }
            out.write("  -> chunk \(hex(b.userStart(k))) (\(size(k)) bytes usable)\n")
            return
        }
        if w.fromSnapshot, let g = r.types?.groups() {
            out.write("\(hex(w.address)) is in chunk \(hex(b.userStart(k))) (\(size(k)) bytes usable, \(g.name(g.of[k]))), \(w.leakClass.words)")
        } else {
            out.write("\(hex(w.address)) is in chunk \(hex(b.userStart(k))) (\(size(k)) bytes usable), \(w.leakClass.words)")
        }
        out.write(w.reason.map { ": \($0)\n" } ?? "\n")
        guard let c = w.chain else { return }
        func pointee(_ v: UInt64) -> String {
            guard let t = b.block(containing: v) else { return "" }
            return v == b.userStart(t) ? "" : " (interior pointer, +0x\(String(v - b.userStart(t), radix: 16)))"
        }
        out.write("  \(rootText(r, c, w.names).text) holds \(hex(c.rootValue))\(pointee(c.rootValue))\n")
        for h in c.hops {
            out.write("  -> chunk \(hex(b.userStart(h.block))) (\(size(h.block)) bytes usable) +0x\(String(h.offset, radix: 16)) holds \(hex(h.value))\(pointee(h.value))\n")
        }
        out.write("  -> chunk \(hex(b.userStart(k))) (\(size(k)) bytes usable)\n")
    }

    public static func json(_ w: WhyAnswer, into j: inout JSONWriter) {
        let r = w.inspection, b = r.leaks.blocks, k = w.block
        j.document { o in
            o.field("address", hex: w.address); o.field("chunk", hex: b.userStart(k)); o.field("usable", b.userEnd(k) - b.userStart(k))
            o.field("class", w.leakClass.name)
            if let path = w.typedPath {
                let g = r.types!.groups()
                o.array("chain") { a in
                    a.object { $0.field("kind", "root"); $0.field("description", path.owner) }
                    for x in path.blocks.dropLast() {
                        a.object { $0.field("kind", "chunk"); $0.field("chunk", hex: b.userStart(x)); $0.field("usable", b.userEnd(x) - b.userStart(x)); $0.field("type", g.name(g.of[x])) }
                    }
                }
            } else if let c = w.chain {
                let (kind, text) = rootText(r, c, w.names)
                o.array("chain") { a in
                    a.object { e in
                        e.field("kind", kind); e.field("description", text); e.field("value", hex: c.rootValue)
                        if let s = w.names.rootSymbol?.symbol { e.field("symbol", s) }
                        if let m = w.names.rootSymbol?.module { e.field("module", m) }
                        if let d = w.names.definition { e.field("file", d.file); e.field("line", d.line) }
                        if let f = w.names.frame { e.field("frame", f) }
                    }
                    for h in c.hops { a.object { $0.field("kind", "chunk"); $0.field("chunk", hex: b.userStart(h.block)); $0.field("offset", h.offset); $0.field("value", hex: h.value) } }
                }
            } else { o.null("chain") }
            o.field("reason", w.reason)
            if w.fromSnapshot { o.field("from_snapshot", true) }
        }
        j.endLine()
    }
}
