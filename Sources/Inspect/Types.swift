import Analysis
import HeapModel
import ProcessAccess
import Symbols

/// A type label per outstanding chunk.
public struct TypeInspection: Sendable {
    public var heap: HeapReport
    public var blocks: Blocks
    public var labels: TypeLabels
    public var memory: MemoryImage
    /// Time spent reading debug info (roots, types) and propagating, in microseconds.
    public var debugInfoMicroseconds: UInt64
    public var propagationMicroseconds: UInt64
    /// Modules whose DWARF was read.
    public var modules: [String]
    /// The image's symbol session (nil for a snapshot file): what later lookups on the same
    /// image use, instead of opening another on the process.
    public var symbols: SymbolSession? = nil
    /// Every mapping of the image (as read before the stop, or from the core file).
    public var maps: [Mapping] = []
    /// Read from a snapshot file (whose memory holds chunk contents only if taken with --contents).
    public var fromSnapshot = false

    /// The label of block `k`: "struct node", "shapes::Circle", "char[]", nil for unknown.
    public func label(_ k: Int) -> String? { labels.label(k) }
    public func confidence(_ k: Int) -> TypeConfidence { labels.confidence[k] }
    /// The root that owns block `k` (first reached it), if any.
    /// (nil too when the labels were made without owners: `leaks` without `typeOwners`)
    public func owner(_ k: Int) -> String? { k < labels.owner.count && labels.owner[k] >= 0 ? labels.roots[Int(labels.owner[k])].name : nil }
}

extension Inspector {
    /// Stop the target once (as `leaks` does), detach, and label every outstanding chunk:
    /// declared types from DWARF followed from typed roots (globals, TLS of the modules loaded at start-up, every
    /// frame's locals and parameters — stacks unwound offline from the copy) through pointer
    /// members; C++ objects by the `vtable for X` their first word points into; strings by their bytes.
    public static func types(pid: Int32, options: InspectOptions = InspectOptions()) throws(InspectError) -> TypeInspection {
        try types(.process(pid), options: options)
    }
    /// `types` of a live process or a core file.
    public static func types(_ target: InspectTarget, options: InspectOptions = InspectOptions()) throws(InspectError) -> TypeInspection {
        if case .snapshot(let path) = target { return TypeInspection(snapshot: try readSnapshot(path)) }
        return types(image: try inspectCapturing(target, options: options, writable: true), options: options)
    }

    /// `types` of a process image taken with `writable`.
    public static func types(image c: ProcessImage, options: InspectOptions = InspectOptions()) -> TypeInspection {
        let memory = c.memory()
        let blocks = Blocks(c.report.heap.chunks)
        return label(image: c, memory: memory, blocks: blocks, pid: c.accessPid, options: options, lineage: .owners)
    }

    /// What labelling reads from debug info and the blocks' first words, before any propagation:
    /// the classes of vtable candidates, the declared types and typed roots. It reads only the
    /// capture and the blocks (and the symbol session, under its lock): `leaks` makes it beside
    /// its reference scan.
    struct LabelSources {
        var vtableClass: [UInt64: String]
        var declared: DeclaredTypes
        var microseconds: UInt64
        /// A bit per block: its bytes are text (see `textBlocks`); nil when not made here.
        var text: [UInt64]?
    }

    /// Each block of `among` whose first 8 bytes were copied: its number, its bounds, its first
    /// word, and the cursor on its region (blocks are in address order: consecutive ones share a
    /// region, looked up once).
    static func eachBlockStart(_ blocks: Blocks, _ memory: MemoryImage, among: (Int) -> Bool = { _ in true },
                               _ body: (_ k: Int, _ start: UInt64, _ end: UInt64, _ word: UInt64, _ cursor: RegionCursor) -> Void) {
        var cursor = RegionCursor(memory)
        for k in 0..<blocks.count where among(k) {
            let a = blocks.userStart(k)
            guard cursor.reach(a, 8) else { continue }
            body(k, a, blocks.userEnd(k), cursor.base!.loadUnaligned(fromByteOffset: Int(a - cursor.start), as: UInt64.self), cursor)
        }
    }

    /// The block [start, end), whose first word is `word`, is text: printable up to a NUL inside
    /// it, and its first word not an address of a mapping of `maps` (sorted; a pointer's bytes can
    /// be printable).
    static func isText(_ start: UInt64, _ end: UInt64, _ word: UInt64, _ cursor: RegionCursor, maps: [Mapping]) -> Bool {
        isString(cursor.base!, cursor.start, cursor.end, start, end) && maps.mapping(containing: word) == nil
    }

    /// `memory`: the image's copy (a MemoryImage of its own when this runs on another thread:
    /// lookups keep a cursor).
    /// `text`: also find which blocks are text (a pass over every block, for a caller that makes
    /// this beside other work; otherwise only the blocks left untyped are looked at, later).
    static func labelSources(image c: ProcessImage, memory: MemoryImage, blocks: Blocks, text: Bool = false) -> LabelSources {
        let t0 = nowNs()
        let trace = PhaseTrace()
        // First words that point into a module's read-only data: vtable candidates.
        // (the maps read before the stop: nothing after the detach reads /proc/PID for them)
        let ranges = c.target.maps.filter { $0.path.hasPrefix("/") && !$0.executable }.map { ($0.start, $0.end) }
        let lo = ranges.map(\.0).min() ?? 0, hi = ranges.map(\.1).max() ?? 0
        var candidates = Set<UInt64>()
        // With `text`, the same pass (over each block's first bytes) finds the text blocks.
        let maps = c.target.maps.sorted { $0.start < $1.start }
        var textBits = text ? [UInt64](repeating: 0, count: (blocks.count + 63) / 64) : nil
        eachBlockStart(blocks, memory) { k, a, e, w, cursor in
            if e - a >= 8, w & 7 == 0, w >= lo, w < hi, ranges.contains(where: { w >= $0.0 && w < $0.1 }) { candidates.insert(w) }
            if text, isText(a, e, w, cursor, maps: maps) { textBits![k >> 6] |= 1 << UInt64(k & 63) }
        }
        trace.mark(text ? "types: vtable candidates and text" : "types: vtable candidates")
        var vtableClass: [UInt64: String] = [:]
        var declared = DeclaredTypes(table: TypeTable(), roots: [], classes: [:], modules: [])
        SymbolSession.lock.locked {
            let s = c.symbols
            let values = Array(candidates)
            for (v, r) in zip(values, s.resolve(values)) {
                if let sym = r.symbol, sym.hasPrefix("vtable for ") { vtableClass[v] = String(sym.dropFirst(11)) }
            }
            let regs: [(tid: Int32, regs: [UInt64])] = c.capture.threads.map { t in
                (t.tid, withUnsafeBytes(of: t.regs) { Array($0.bindMemory(to: UInt64.self)) })
            }
            let frames = s.unwind(threads: regs, read: { memory.word($0) })
            let threads = c.capture.threads.map { ThreadFrames(tid: $0.tid, threadPointer: $0.fsBase, frames: frames[$0.tid] ?? []) }
            declared = s.declaredTypes(threads: threads, classNames: Set(vtableClass.values), roots: true, read: { memory.word($0) })
        }
        trace.mark("types: symbols, stacks, declared types")
        return LabelSources(vtableClass: vtableClass, declared: declared, microseconds: (nowNs() - t0) / 1000, text: textBits)
    }

    /// A bit per block of `among` that is text (`isText`).
    static func textBlocks(_ memory: MemoryImage, _ blocks: Blocks, maps: [Mapping], among: (Int) -> Bool) -> [UInt64] {
        var bits = [UInt64](repeating: 0, count: (blocks.count + 63) / 64)
        eachBlockStart(blocks, memory, among: among) { k, a, e, w, cursor in
            if isText(a, e, w, cursor, maps: maps) { bits[k >> 6] |= 1 << UInt64(k & 63) }
        }
        return bits
    }

    /// Type labels for `blocks` of a capture (shared by `types`, `leaks`, `chunks`). `sources`:
    /// `labelSources` when already made.
    static func label(image c: ProcessImage, memory: MemoryImage, blocks: Blocks, pid: Int32,
                      options: InspectOptions, lineage: TypePropagation.Lineage, sources: LabelSources? = nil) -> TypeInspection {
        options.progress?("labelling types from debug info")
        let src = sources ?? labelSources(image: c, memory: memory, blocks: blocks)
        let vtableClass = src.vtableClass, declared = src.declared
        let t1 = nowNs()
        let trace = PhaseTrace()
        var table = declared.table
        var classType: [String: Int32] = declared.classes
        var seeds: [(block: Int, type: Int32)] = []
        if !vtableClass.isEmpty {
            eachBlockStart(blocks, memory) { k, a, e, w, _ in
                guard e - a >= 8, let name = vtableClass[w] else { return }
                if classType[name] == nil { classType[name] = table.add(.init(kind: .structure, name: name, size: 0)) }
                seeds.append((k, classType[name]!))
            }
        }
        var labels = TypePropagation.run(table: table, roots: declared.roots, seeds: seeds, blocks: blocks, memory: memory, lineage: lineage)
        trace.mark("types: propagation")
        // std::make_shared's block holds the object after its counts: it is named by that object.
        for t in 0..<Int32(labels.table.count) where labels.table[t].name.hasPrefix("std::_Sp_counted_ptr_inplace<") {
            if let held = TypeTable.templateArguments(labels.table[t].name)?.first { labels.table.update(t) { $0.name = held + " (make_shared)" } }
        }
        let maps = c.target.maps.sorted { $0.start < $1.start }
        func isMapped(_ a: UInt64) -> Bool { maps.mapping(containing: a) != nil }
        // The rest: text.
        var char: Int32 = -1
        let text = src.text ?? { let type = labels.type; return textBlocks(memory, blocks, maps: maps, among: { type[$0] < 0 }) }()
        for k in 0..<blocks.count where labels.type[k] < 0 && text[k >> 6] & (1 << UInt64(k & 63)) != 0 {
            if char < 0 { char = labels.table.add(.init(kind: .base, name: "char", size: 1, encoding: 6)) }
            labels.type[k] = char
            labels.confidence[k] = .heuristic
        }
        // The rest, where it fits the layout of reachable chunks' types of its size.
        let capture = c.capture
        Resemblance.run(labels: &labels, blocks: blocks, memory: memory, include: { _ in true },
                        isMapped: isMapped, decodeLink: { capture.decodeLink($0, at: $1) })
        trace.mark("types: text and resemblance")
        let t2 = nowNs()
        return TypeInspection(heap: c.report, blocks: blocks, labels: labels, memory: memory,
                              debugInfoMicroseconds: src.microseconds, propagationMicroseconds: (t2 - t1) / 1000,
                              modules: declared.modules, symbols: c.symbols, maps: c.target.maps)
    }

    /// Printable text (at least 2 characters) up to a NUL inside the chunk.
    /// (`base`: the bytes of a region copied from [regionStart, regionEnd), which holds `start`.)
    @inline(__always) static func isString(_ base: UnsafeRawPointer, _ regionStart: UInt64, _ regionEnd: UInt64, _ start: UInt64, _ end: UInt64) -> Bool {
        let stop = min(end, regionEnd)
        var a = start, n = 0
        while a < stop {
            let b = base.load(fromByteOffset: Int(a - regionStart), as: UInt8.self)
            if b == 0 { return n >= 2 }
            guard (b >= 0x20 && b < 0x7f) || b == 0x09 || b == 0x0a else { return false }
            n += 1; a += 1
        }
        return false
    }
}

extension TypeInspection {
    /// One row of the type histogram.
    public struct Row: Sendable {
        public var type: String          // "(unknown)" for unlabelled chunks
        public var confidence: TypeConfidence
        /// Reached only through union members.
        public var ambiguous: Bool
        public var chunks: Int
        public var bytes: UInt64
        /// The roots owning most of these chunks, most first: (root, chunks).
        public var owners: [(name: String, chunks: Int)]
    }

    /// The label a histogram groups by: arrays of any length together ("struct node*[]").
    public func groupLabel(_ k: Int) -> String {
        let t = labels.type[k]
        guard t >= 0 else { return "(unknown)" }
        return TypeLabels.groupName(labels.table, t, array: labels.count.isArray(k))
    }

    /// Blocks grouped by type label, confidence and union flag — what histograms, leak groups and
    /// diffs count by. `of`: per block, its group (-1: unknown).
    /// The group of each block (`of[k]`, -1 for none), read from the labels: no array of its own.
    public struct GroupOf: RandomAccessCollection, Sendable {
        let slotGroup: [Int32], type: [Int32], count: CountColumn, confidence: [TypeConfidence], ambiguous: [Bool]
        public var startIndex: Int { 0 }
        public var endIndex: Int { type.count }
        @inline(__always) public subscript(k: Int) -> Int32 {
            let t = type[k]
            guard t >= 0 else { return -1 }
            return slotGroup[GroupOf.slot(t, count.isArray(k), confidence[k], ambiguous[k])]
        }
        /// Per (type, array or not, confidence, union): 16 slots per type.
        @inline(__always) static func slot(_ t: Int32, _ array: Bool, _ c: TypeConfidence, _ a: Bool) -> Int {
            Int(t) * 16 + (array ? 8 : 0) + Int(c.rawValue) * 2 + (a ? 1 : 0)
        }
    }

    public struct Groups: Sendable {
        public var of: GroupOf
        public var label: [String]
        public var confidence: [TypeConfidence]
        public var ambiguous: [Bool]
        /// "struct tree (via union)".
        public func name(_ g: Int32) -> String { g < 0 ? "(unknown)" : label[Int(g)] + (ambiguous[Int(g)] ? " (via union)" : "") }
        /// The name, and how the type is known when not from declarations ("char[] (heuristic)",
        /// "struct record (resembles)"): one per identity where names print alike (diff's rows).
        public func key(_ g: Int32) -> String {
            guard g >= 0 else { return name(g) }
            switch confidence[Int(g)] {
            case .heuristic, .resembles, .ambiguous: return name(g) + " (\(confidence[Int(g)].name))"
            default: return name(g)
            }
        }
    }

    public func groups() -> Groups {
        // Per (type, array or not, confidence, union) slot — no hashing per block; a type repeats
        // in the table once per compile unit, so slots merge by name into groups.
        var slotGroup = [Int32](repeating: -2, count: (labels.table.count + 1) * 16)
        var byName: [String: Int32] = [:]
        var label: [String] = [], confidence: [TypeConfidence] = [], ambiguous: [Bool] = []
        let type = labels.type, count = labels.count, conf = labels.confidence, amb = labels.ambiguous
        for k in 0..<blocks.count where type[k] >= 0 {
            let slot = GroupOf.slot(type[k], count.isArray(k), conf[k], amb[k])
            if slotGroup[slot] == -2 {
                let name = groupLabel(k), key = "\(name)\u{0}\(conf[k].rawValue)\u{0}\(amb[k])"
                if let id = byName[key] { slotGroup[slot] = id } else {
                    slotGroup[slot] = Int32(label.count); byName[key] = slotGroup[slot]
                    label.append(name); confidence.append(conf[k]); ambiguous.append(amb[k])
                }
            }
        }
        return Groups(of: GroupOf(slotGroup: slotGroup, type: type, count: count, confidence: conf, ambiguous: amb),
                      label: label, confidence: confidence, ambiguous: ambiguous)
    }

    /// Outstanding chunks by type (only blocks `include` accepts), most bytes first.
    public func histogram(topOwners: Int = 3, include: (Int) -> Bool = { _ in true }) -> [Row] {
        let g = groups()
        let n = g.label.count + 1          // the last one: unknown
        var chunks = [Int](repeating: 0, count: n), bytes = [UInt64](repeating: 0, count: n)
        var owners: [Int: Int] = [:]       // group << 32 | owner -> chunks
        let hasOwners = !labels.owner.isEmpty
        for k in 0..<blocks.count where include(k) {
            let i = g.of[k] < 0 ? n - 1 : Int(g.of[k])
            chunks[i] += 1
            bytes[i] += blocks.userEnd(k) - blocks.userStart(k)
            if hasOwners && labels.owner[k] >= 0 { owners[i << 32 | Int(labels.owner[k]), default: 0] += 1 }
        }
        var ownersOf: [Int: [(Int32, Int)]] = [:]
        for (key, c) in owners { ownersOf[key >> 32, default: []].append((Int32(truncatingIfNeeded: key & 0xffff_ffff), c)) }
        return (0..<n).filter { chunks[$0] > 0 }.map { i in
            // Most chunks first; ties by name (not by root index, which differs between a live
            // inspection and a snapshot's list of owners).
            let top = (ownersOf[i] ?? []).map { (labels.roots[Int($0.0)].name, $0.1) }
                .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.prefix(topOwners).map { ($0.0, $0.1) }
            let known = i < n - 1
            return Row(type: known ? g.label[i] : "(unknown)", confidence: known ? g.confidence[i] : .unknown,
                       ambiguous: known && g.ambiguous[i], chunks: chunks[i], bytes: bytes[i], owners: top)
        }.sorted { ($0.bytes, $0.chunks, $1.type) > ($1.bytes, $1.chunks, $0.type) }
    }
}
