import Analysis
import GlibcMalloc
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

    /// The label of block `k`: "struct node", "shapes::Circle", "char[]", nil for unknown.
    public func label(_ k: Int) -> String? { labels.label(k) }
    public func confidence(_ k: Int) -> TypeConfidence { labels.confidence[k] }
    /// The root that owns block `k` (first reached it), if any.
    public func owner(_ k: Int) -> String? { labels.owner[k] >= 0 ? labels.roots[Int(labels.owner[k])].name : nil }
}

extension Inspector {
    /// Stop the target once (as `leaks` does), detach, and label every outstanding chunk:
    /// declared types from DWARF followed from typed roots (globals, TLS of the modules loaded at start-up, every
    /// frame's locals and parameters — stacks unwound offline from the copy) through pointer
    /// members; C++ objects by the `vtable for X` their first word points into; strings by their bytes.
    public static func types(pid: Int32, options: InspectOptions = InspectOptions()) throws(InspectError) -> TypeInspection {
        let c = try inspectCapturing(pid: pid, options: options, writable: true)
        let memory = c.memory()
        let blocks = Blocks(c.report.heap.chunks)
        return label(captured: c, memory: memory, blocks: blocks, pid: pid, options: options)
    }

    /// Type labels for `blocks` of a capture (shared by `types`, `leaks`, `chunks`).
    /// `only`: label just these blocks, from their contents (vtables and what those objects point
    /// to, strings) — no declared roots: what `leaks` needs for lost chunks, which no root reaches.
    static func label(captured c: Captured, memory: MemoryImage, blocks: Blocks, pid: Int32,
                      options: InspectOptions, only: [Bool]? = nil) -> TypeInspection {
        let t0 = nowNs()
        // First words that point into a module's read-only data: vtable candidates.
        let ranges = ((try? ProcFS.maps(pid: pid)) ?? []).filter { $0.path.hasPrefix("/") && !$0.executable }.map { ($0.start, $0.end) }
        let lo = ranges.map(\.0).min() ?? 0, hi = ranges.map(\.1).max() ?? 0
        // The first word of each block (blocks are in address order: consecutive ones share a region).
        func eachFirstWord(_ body: (Int, UInt64) -> Void) {
            var region: Region? = nil
            for k in 0..<blocks.count where blocks.end[k] - blocks.start[k] >= 8 && (only?[k] ?? true) {
                let a = blocks.start[k]
                if region == nil || !region!.contains(a, 8) { region = memory.region(containing: a, length: 8) }
                guard let r = region else { continue }
                body(k, r.word(a))
            }
        }
        var candidates = Set<UInt64>()
        eachFirstWord { _, w in
            if w & 7 == 0, w >= lo, w < hi, ranges.contains(where: { w >= $0.0 && w < $0.1 }) { candidates.insert(w) }
        }
        var vtableClass: [UInt64: String] = [:]
        var declared = DeclaredTypes(table: TypeTable(), roots: [], classes: [:], modules: [])
        SymbolSession.lock.locked {
            guard let s = try? SymbolSession(pid: pid, useDebugInfo: options.useDebugInfo) else { return }
            let values = Array(candidates)
            for (v, r) in zip(values, s.resolve(values)) {
                if let sym = r.symbol, sym.hasPrefix("vtable for ") { vtableClass[v] = String(sym.dropFirst(11)) }
            }
            let regs: [(tid: Int32, regs: [UInt64])] = c.capture.threads.map { t in
                (t.tid, withUnsafeBytes(of: t.regs) { Array($0.bindMemory(to: UInt64.self)) })
            }
            let frames = only == nil ? s.unwind(threads: regs, read: { memory.word($0) }) : [:]
            let threads = c.capture.threads.map { ThreadFrames(tid: $0.tid, threadPointer: $0.fsBase, frames: frames[$0.tid] ?? []) }
            declared = s.declaredTypes(threads: threads, classNames: Set(vtableClass.values), roots: only == nil, read: { memory.word($0) })
        }
        let t1 = nowNs()
        var table = declared.table
        var classType: [String: Int32] = declared.classes
        var seeds: [(block: Int, type: Int32)] = []
        if !vtableClass.isEmpty {
            eachFirstWord { k, w in
                guard let name = vtableClass[w] else { return }
                if classType[name] == nil { classType[name] = table.add(.init(kind: .structure, name: name, size: 0)) }
                seeds.append((k, classType[name]!))
            }
        }
        var labels = TypePropagation.run(table: table, roots: declared.roots, seeds: seeds, blocks: blocks, memory: memory)
        // The rest: text.
        var char: Int32 = -1
        var region: Region? = nil
        for k in 0..<blocks.count where labels.type[k] < 0 && (only?[k] ?? true) {
            let a = blocks.start[k]
            if region == nil || !region!.contains(a, 8) { region = memory.region(containing: a, length: 8) }
            guard let r = region, isString(r, a, blocks.end[k]) else { continue }
            if char < 0 { char = labels.table.add(.init(kind: .base, name: "char", size: 1, encoding: 6)) }
            labels.type[k] = char
            labels.confidence[k] = .heuristic
        }
        let t2 = nowNs()
        return TypeInspection(heap: c.report, blocks: blocks, labels: labels, memory: memory,
                              debugInfoMicroseconds: (t1 - t0) / 1000, propagationMicroseconds: (t2 - t1) / 1000,
                              modules: declared.modules)
    }

    /// Printable text (at least 2 characters) up to a NUL inside the chunk.
    static func isString(_ r: Region, _ start: UInt64, _ end: UInt64) -> Bool {
        let stop = min(end, r.end)
        var a = start, n = 0
        while a < stop {
            let b = r.base.load(fromByteOffset: Int(a - r.start), as: UInt8.self)
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
        return TypeLabels.groupName(labels.table, t, array: labels.count[k] > 1)
    }

    /// Outstanding chunks by type (only blocks `include` accepts), most bytes first.
    public func histogram(topOwners: Int = 3, include: (Int) -> Bool = { _ in true }) -> [Row] {
        // One slot per (type, array or not, confidence, ambiguous): no hashing per block.
        let width = 16
        var chunks = [Int](repeating: 0, count: (labels.table.count + 1) * width)
        var bytes = [UInt64](repeating: 0, count: chunks.count)
        var owners: [Int: Int] = [:]     // slot << 32 | owner -> chunks
        for k in 0..<blocks.count where include(k) {
            let slot = (Int(labels.type[k]) + 1) * width + (labels.count[k] > 1 ? 8 : 0)
                + Int(labels.confidence[k].rawValue) * 2 + (labels.ambiguous[k] ? 1 : 0)
            chunks[slot] += 1
            bytes[slot] += blocks.end[k] - blocks.start[k]
            if labels.owner[k] >= 0 { owners[slot << 32 | Int(labels.owner[k]), default: 0] += 1 }
        }
        var ownersOf: [Int: [(Int32, Int)]] = [:]
        for (key, n) in owners { ownersOf[key >> 32, default: []].append((Int32(truncatingIfNeeded: key & 0xffff_ffff), n)) }
        // Rows by name (a type repeats in the table once per compile unit that declares it).
        struct Key: Hashable { var type: String; var conf: TypeConfidence; var amb: Bool }
        var rows: [Key: (chunks: Int, bytes: UInt64, owners: [Int32: Int])] = [:]
        for slot in 0..<chunks.count where chunks[slot] > 0 {
            let t = Int32(slot / width - 1), array = slot % width >= 8
            let conf = TypeConfidence(rawValue: UInt8((slot % 8) / 2))!, amb = slot % 2 == 1
            let name = t < 0 ? "(unknown)" : TypeLabels.groupName(labels.table, t, array: array)
            let key = Key(type: name, conf: conf, amb: amb)
            rows[key, default: (0, 0, [:])].chunks += chunks[slot]
            rows[key]!.bytes += bytes[slot]
            for (o, n) in ownersOf[slot] ?? [] { rows[key]!.owners[o, default: 0] += n }
        }
        return rows.map { key, v in
            let owners = v.owners.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(topOwners)
                .map { (labels.roots[Int($0.key)].name, $0.value) }
            return Row(type: key.type, confidence: key.conf, ambiguous: key.amb, chunks: v.chunks, bytes: v.bytes, owners: owners)
        }.sorted { ($0.bytes, $0.chunks, $1.type) > ($1.bytes, $1.chunks, $0.type) }
    }
}
