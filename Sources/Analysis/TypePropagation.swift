import HeapModel
import ProcessAccess

/// How a block's type is known, weakest first.
public enum TypeConfidence: UInt8, Sendable, CaseIterable, Comparable {
    case unknown, heuristic, declared, vtable
    public var name: String {
        switch self {
        case .unknown: return "unknown"
        case .heuristic: return "heuristic"
        case .declared: return "declared"
        case .vtable: return "vtable"
        }
    }
    public static func < (a: TypeConfidence, b: TypeConfidence) -> Bool { a.rawValue < b.rawValue }
}

/// A type per block, from declared roots and vtables, propagated through pointer members.
public struct TypeLabels: Sendable {
    public var table: TypeTable
    /// Per block: the type (table index; -1 none). A block holding n elements has `count` n.
    public var type: [Int32]
    public var count: [UInt32]
    public var confidence: [TypeConfidence]
    /// Reached only through a union member: a candidate.
    public var ambiguous: [Bool]
    /// The root (index into `roots`) the block was first reached from; -1 none.
    public var owner: [Int32]
    public var roots: [TypedRoot]
    /// Blocks reached with more than one type (counted once each).
    public var conflicts: Int
    /// Propagation rounds until the labels stopped changing.
    public var rounds: Int

    /// "struct node", "shapes::Circle", "struct node*[16]", "char[]".
    public func label(_ k: Int) -> String? {
        let t = type[k]
        guard t >= 0 else { return nil }
        return TypeLabels.name(table, t, count[k])
    }

    public static func name(_ table: TypeTable, _ t: Int32, _ n: UInt32) -> String {
        let s = table.strip(t)
        if s >= 0, table[s].kind == .base, table[s].size == 1 { return table.name(s) + "[]" }
        return n > 1 ? table.name(t) + "[\(n)]" : table.name(t)
    }
}

public enum TypePropagation {
    /// Type every block reachable from `roots` through typed pointers, and every block of
    /// `seeds` (C++ objects by their vtable: pinned to that class) and what they point to.
    /// A block reached through `T*` is `T`, or `T[n]` when its size holds n > 1 elements.
    /// Conflicting reaches vote; the majority wins and the propagation is redone until no label
    /// changes (at most 4 rounds).
    public static func run(table: TypeTable, roots: [TypedRoot], seeds: [(block: Int, type: Int32)],
                           blocks: Blocks, memory: MemoryImage) -> TypeLabels {
        let engine = Engine(table: table, blocks: blocks, memory: memory)
        for s in seeds { engine.pin[s.block] = s.type; engine.pinnedByVtable[s.block] = true }
        var rounds = 0
        while true {
            rounds += 1
            engine.reset()
            for (i, r) in roots.enumerated() { engine.root(r, owner: Int32(i)) }
            engine.drain()
            for s in seeds where engine.type[s.block] < 0 {
                engine.reach(s.block, s.type, ambiguous: false, owner: -1)
            }
            engine.drain()
            if rounds >= 4 || !engine.settle() { break }
        }
        var confidence = [TypeConfidence](repeating: .unknown, count: blocks.count)
        var count = [UInt32](repeating: 1, count: blocks.count)
        for k in 0..<blocks.count where engine.type[k] >= 0 {
            confidence[k] = engine.pinnedByVtable[k] ? .vtable : .declared
            count[k] = engine.elements(k)
        }
        return TypeLabels(table: engine.table, type: engine.type, count: count, confidence: confidence,
                          ambiguous: engine.ambiguous, owner: engine.owner, roots: roots,
                          conflicts: engine.votes.count, rounds: rounds)
    }
}

/// The propagation state. Layouts (pointer slots of a type, nested structs and arrays flattened)
/// are computed once per type.
private final class Engine {
    struct Slot { var offset: UInt64; var target: Int32; var ambiguous: Bool }
    struct Layout { var size: UInt64; var slots: [Slot] }

    var table: TypeTable
    let blocks: Blocks
    let memory: MemoryImage
    var type: [Int32]
    var ambiguous: [Bool]
    var owner: [Int32]
    var support: [UInt32]
    var votes: [Int: [Int32: (n: UInt32, type: Int32)]] = [:]   // per block, per canonical type
    var pin: [Int: Int32] = [:]
    var pinnedByVtable: [Bool]
    var queue: [Int32] = []
    private var layouts: [Int32: Layout] = [:]
    private var canonical: [Int32] = []            // per type: id of its name (types repeat per compile unit)
    private var canonicalIDs: [String: Int32] = [:]
    private var labelOf: [Int32] = []              // per pointee type: the type to label blocks with

    init(table: TypeTable, blocks: Blocks, memory: MemoryImage) {
        self.table = table; self.blocks = blocks; self.memory = memory
        type = .init(repeating: -1, count: blocks.count)
        ambiguous = .init(repeating: false, count: blocks.count)
        owner = .init(repeating: -1, count: blocks.count)
        support = .init(repeating: 0, count: blocks.count)
        pinnedByVtable = .init(repeating: false, count: blocks.count)
        canonical = .init(repeating: -2, count: table.count)
        labelOf = .init(repeating: -2, count: table.count)
    }

    func reset() {
        for k in 0..<blocks.count { type[k] = -1; ambiguous[k] = false; owner[k] = -1; support[k] = 0 }
        votes = [:]
        queue = []
    }

    func canon(_ t: Int32) -> Int32 {
        if canonical[Int(t)] != -2 { return canonical[Int(t)] }
        let n = table.name(table.strip(t) >= 0 ? table.strip(t) : t)
        let id = canonicalIDs[n] ?? Int32(canonicalIDs.count)
        canonicalIDs[n] = id
        canonical[Int(t)] = id
        return id
    }

    /// The type a block reached through a pointer to `t` gets: `t` without typedefs and
    /// qualifiers, unless that is anonymous (then the typedef's name says more).
    func labelType(_ t: Int32) -> Int32 {
        if labelOf[Int(t)] != -2 { return labelOf[Int(t)] }
        let s = table.strip(t)
        var l = s
        if s < 0 { l = -1 }
        else if table[s].name.hasPrefix("(anonymous") {
            var u = t
            while u >= 0, table[u].kind == .qualified { u = table[u].target }
            l = u
        } else if table[s].kind == .function { l = -1 }
        labelOf[Int(t)] = l
        return l
    }

    /// Node types some container declares (see TypeTable.Entry.nodes), by name.
    private lazy var nodeTypes: Set<Int32> = {
        var out = Set<Int32>()
        for e in table.entries { for n in e.nodes { out.insert(canon(n)) } }
        return out
    }()

    /// The base classes at offset 0 of `t` (and theirs), by name.
    private func basesAtZero(_ t: Int32) -> [Int32] {
        var out: [Int32] = []
        var t = table.strip(t), n = 0
        while t >= 0, n < 16, let b = table[t].members.first(where: { $0.isBase && $0.offset == 0 }) {
            t = table.strip(b.type); n += 1
            if t >= 0 { out.append(canon(t)) }
        }
        return out
    }

    func layout(_ t: Int32) -> Layout {
        let s = table.strip(t)
        if let l = layouts[s] { return l }
        var slots: [Slot] = []
        // A node type's own base-class pointers point to nodes like it.
        collect(s, 0, false, &slots, hints: s >= 0 && nodeTypes.contains(canon(s)) ? [s] : [], depth: 0)
        let l = Layout(size: table.size(s), slots: slots)
        layouts[s] = l
        return l
    }

    /// Pointer slots of `t` at `base`. `hints`: node types declared by the enclosing classes; a
    /// pointer to a base class of one of them is taken as a pointer to it.
    private func collect(_ t: Int32, _ base: UInt64, _ amb: Bool, _ out: inout [Slot], hints: [Int32], depth: Int) {
        let s = table.strip(t)
        guard s >= 0, depth < 32, out.count < 65536 else { return }
        let e = table[s]
        switch e.kind {
        case .pointer:
            guard e.target >= 0 else { return }
            var l = labelType(e.target)
            if l >= 0, !hints.isEmpty {
                let c = canon(l)
                if let h = hints.first(where: { basesAtZero($0).contains(c) }) { l = h }
            }
            if l >= 0 { out.append(Slot(offset: base, target: l, ambiguous: amb)) }
        case .structure, .union:
            let h = e.nodes.isEmpty ? hints : hints + e.nodes
            for m in e.members where m.bitSize == 0 {
                collect(m.type, base + m.offset, amb || e.kind == .union, &out, hints: h, depth: depth + 1)
            }
        case .array:
            let es = table.size(e.target)
            guard es > 0 else { return }
            var inner: [Slot] = []
            collect(e.target, 0, amb, &inner, hints: hints, depth: depth + 1)
            guard !inner.isEmpty else { return }
            for i in 0..<e.count where out.count < 65536 {
                for sl in inner { out.append(Slot(offset: base + i * es + sl.offset, target: sl.target, ambiguous: sl.ambiguous)) }
            }
        default: return
        }
    }

    /// Elements of its type a block holds (1 unless the type is smaller than half the block,
    /// and the block is larger than malloc's smallest).
    func elements(_ k: Int) -> UInt32 {
        let size = table.size(type[k])
        let usable = blocks.end[k] - blocks.start[k]
        guard size > 0, usable >= 2 * size, usable > 24 else { return 1 }
        return UInt32(min(usable / size, UInt64(UInt32.max)))
    }

    /// A pointer of type `target*` reaches block `k` (at its start).
    @inline(__always) func reach(_ k: Int, _ target: Int32, ambiguous amb: Bool, owner o: Int32) {
        let current = type[k]
        if current < 0 {
            type[k] = pin[k] ?? target
            ambiguous[k] = amb && pin[k] == nil
            owner[k] = o
            support[k] = 1
            if pin[k] != nil && canon(pin[k]!) != canon(target) && !pinnedByVtable[k] { vote(k, target) }
            queue.append(Int32(k))
            return
        }
        if canon(current) == canon(target) {
            support[k] &+= 1
            if !amb { ambiguous[k] = false }
            if votes[k] != nil { votes[k]![canon(target), default: (0, target)].n += 1 }
            return
        }
        // A vtable's class overrides any declared base class of it.
        if pinnedByVtable[k] { return }
        vote(k, target)
    }

    private func vote(_ k: Int, _ target: Int32) {
        if votes[k] == nil { votes[k] = [canon(type[k]): (support[k], type[k])] }
        votes[k]![canon(target), default: (0, target)].n += 1
    }

    /// Type the memory of a root.
    func root(_ r: TypedRoot, owner o: Int32) {
        switch r.location {
        case .value(let v):
            let s = table.strip(r.type)
            guard s >= 0, table[s].kind == .pointer, table[s].target >= 0 else { return }
            let l = labelType(table[s].target)
            if l >= 0, let k = blocks.block(containing: v), blocks.start[k] == v { reach(k, l, ambiguous: false, owner: o) }
        case .memory(let a):
            let lay = layout(r.type)
            guard !lay.slots.isEmpty, let region = memory.region(containing: a, length: max(lay.size, 8)) else { return }
            scan(region, a, lay, count: 1, end: a + max(lay.size, 8), owner: o)
        }
    }

    @inline(__always) private func scan(_ region: Region, _ a: UInt64, _ lay: Layout, count: UInt64, end: UInt64, owner o: Int32) {
        let base = region.base, rs = region.start, re = min(region.end, end)
        for e in 0..<count {
            let at = a + e * lay.size
            for sl in lay.slots {
                let w = at + sl.offset
                guard w >= rs, w + 8 <= re else { continue }
                let v = base.loadUnaligned(fromByteOffset: Int(w - rs), as: UInt64.self)
                guard v & 7 == 0, v != 0, let k = blocks.block(containing: v), blocks.start[k] == v else { continue }
                reach(k, sl.target, ambiguous: sl.ambiguous, owner: o)
            }
        }
    }

    func drain() {
        while let k32 = queue.popLast() {
            let k = Int(k32)
            let t = type[k]
            let lay = layout(t)
            guard !lay.slots.isEmpty, lay.size > 0 else { continue }
            let start = blocks.start[k], usable = blocks.end[k] - start
            guard let region = memory.region(containing: start, length: min(usable, lay.size)) else { continue }
            let n = max(1, usable / lay.size)
            scan(region, start, lay, count: lay.size > usable ? 1 : n, end: blocks.end[k], owner: owner[k])
        }
    }

    /// After a round: pin every conflicting block to its majority type. True if a label changed.
    func settle() -> Bool {
        var changed = false
        for (k, v) in votes where !pinnedByVtable[k] {
            let mine = canon(type[k])
            guard let top = v.values.map(\.n).max(), (v[mine]?.n ?? 0) < top,
                  let best = v.first(where: { $0.value.n == top })?.value.type else { continue }
            if pin[k].map({ canon($0) != canon(best) }) ?? true {
                pin[k] = best
                changed = true
            }
        }
        return changed
    }
}
