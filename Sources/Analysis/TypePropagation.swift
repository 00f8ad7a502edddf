import HeapModel
import ProcessAccess

/// How a block's type is known, weakest first (raw values are what snapshot files store).
public enum TypeConfidence: UInt8, Sendable, CaseIterable, Comparable {
    /// declared: reached through a typed pointer from a declared root; vtable: its first word
    /// points into `vtable for X`; heuristic: its bytes are text; resembles: no typed pointer
    /// reaches it, and its words fit the layout of the one type of reachable chunks of its size
    /// that they fit best; ambiguous: they fit two or more such types equally (the label names them).
    case unknown, heuristic, declared, vtable, resembles, ambiguous
    public var name: String {
        switch self {
        case .unknown: return "unknown"
        case .heuristic: return "heuristic"
        case .declared: return "declared"
        case .vtable: return "vtable"
        case .resembles: return "resembles"
        case .ambiguous: return "ambiguous"
        }
    }
    private var rank: Int {
        switch self {
        case .unknown: return 0
        case .ambiguous: return 1
        case .heuristic: return 2
        case .resembles: return 3
        case .declared: return 4
        case .vtable: return 5
        }
    }
    public static func < (a: TypeConfidence, b: TypeConfidence) -> Bool { a.rank < b.rank }
}

/// A type per block, from declared roots and vtables, propagated through pointer members.
public struct TypeLabels: Sendable {
    public var table: TypeTable
    /// Per block: the type (table index; -1 none). A block holding n elements has `count` n.
    public var type: [Int32]
    public var count: CountColumn
    public var confidence: [TypeConfidence]
    /// Reached only through a union member: a candidate.
    public var ambiguous: [Bool]
    /// The root (index into `roots`) the block was first reached from; -1 none. Empty when the
    /// propagation was told not to keep owners (`Lineage.none`).
    public var owner: [Int32]
    /// The block whose pointer first reached this one (-1: a root or a vtable seed, or untyped):
    /// the owner chain root → … → block, one tree. Empty unless kept (`Lineage.full`, `.chains`).
    /// With `.chains` a block reached from a root holds -2 - root there (its owner; `owner` is
    /// empty): every block's owner is its chain's top's.
    public var parent: [Int32]
    public var roots: [TypedRoot]
    /// Blocks reached with more than one type (counted once each).
    public var conflicts: Int
    /// Propagation rounds until the labels stopped changing.
    public var rounds: Int

    public init(table: TypeTable, type: [Int32], count: CountColumn, confidence: [TypeConfidence], ambiguous: [Bool],
                owner: [Int32], parent: [Int32], roots: [TypedRoot], conflicts: Int, rounds: Int) {
        self.table = table; self.type = type; self.count = count; self.confidence = confidence; self.ambiguous = ambiguous
        self.owner = owner; self.parent = parent
        self.roots = roots; self.conflicts = conflicts; self.rounds = rounds
    }

    /// "struct node", "shapes::Circle", "struct node*[16]", "char[]".
    public func label(_ k: Int) -> String? {
        let t = type[k]
        guard t >= 0 else { return nil }
        return TypeLabels.name(table, t, count[k])
    }

    /// As `name`, with any element count as "[]": how histograms group arrays.
    public static func groupName(_ table: TypeTable, _ t: Int32, array: Bool) -> String {
        let one = name(table, t, 1)
        return array && !one.hasSuffix("[]") ? one + "[]" : one
    }

    public static func name(_ table: TypeTable, _ t: Int32, _ n: UInt32) -> String {
        let s = table.strip(t)
        if s >= 0, table[s].kind == .base, table[s].size == 1 { return table.name(s) + "[]" }
        return n > 1 ? table.name(t) + "[\(n)]" : table.name(t)
    }
}

public enum TypePropagation {
    /// What the propagation keeps of how each block was reached, beyond its type: each block's
    /// owner (the root it was first reached from) costs 4 bytes a block, its parent 4 more;
    /// `chains` keeps the parents, and each chain's owner at its top only (see `TypeLabels.parent`).
    public enum Lineage: Sendable { case none, owners, full, chains }

    /// Type every block reachable from `roots` through typed pointers, and every block of
    /// `seeds` (C++ objects by their vtable: pinned to that class) and what they point to.
    /// A block reached through `T*` is `T`, or `T[n]` when its size holds n > 1 elements.
    /// Conflicting reaches vote; the majority wins and the propagation is redone until no label
    /// changes (at most 4 rounds).
    public static func run(table: TypeTable, roots: [TypedRoot], seeds: [(block: Int, type: Int32)],
                           blocks: Blocks, memory: MemoryImage, lineage: Lineage = .full) -> TypeLabels {
        if roots.isEmpty && seeds.isEmpty {
            let n = blocks.count
            return TypeLabels(table: table, type: .init(repeating: -1, count: n), count: .init(repeating: 1, count: n),
                              confidence: .init(repeating: .unknown, count: n), ambiguous: .init(repeating: false, count: n),
                              owner: .init(repeating: -1, count: lineage == .owners || lineage == .full ? n : 0),
                              parent: .init(repeating: -1, count: lineage == .full || lineage == .chains ? n : 0), roots: [], conflicts: 0, rounds: 0)
        }
        let engine = Engine(table: table, blocks: blocks, memory: memory, lineage: lineage)
        for s in seeds { engine.pinByVtable(s.block, s.type) }
        var rounds = 0
        while true {
            rounds += 1
            engine.reset()
            for (i, r) in roots.enumerated() { engine.root(r, owner: Int32(i)) }
            engine.drain()
            for s in seeds where engine.type[s.block] < 0 {
                engine.reach(s.block, s.type, ambiguous: false, owner: -1, from: -1)
            }
            engine.drain()
            if rounds >= 4 || !engine.settle() { break }
        }
        let conflicts = engine.votes.count
        let (type, count, confidence, ambiguous, owner, parent) = engine.result()
        return TypeLabels(table: engine.table, type: type, count: count, confidence: confidence,
                          ambiguous: ambiguous, owner: owner, parent: parent, roots: roots,
                          conflicts: conflicts, rounds: rounds)
    }
}

/// The propagation state: per-block arrays in unmanaged buffers (the hot loop touches them
/// millions of times), pointer-slot layouts of every type computed up front in one flat pool.
private final class Engine {
    struct Slot { var offset: UInt64; var target: Int32; var ambiguous: Bool }

    var table: TypeTable
    let blocks: Blocks
    let memory: MemoryImage
    let n: Int
    private var typeStore: [Int32], ambiguousStore: [Bool], ownerStore: [Int32], parentStore: [Int32]
    let type: UnsafeMutablePointer<Int32>
    let ambiguous: UnsafeMutablePointer<Bool>
    let owner: UnsafeMutablePointer<Int32>
    let parent: UnsafeMutablePointer<Int32>
    /// Reaches of the block's type so far (what its vote starts with if it conflicts): a byte,
    /// counts of 255 and more kept aside.
    let support: UnsafeMutablePointer<UInt8>
    var bigSupport: [Int: UInt32] = [:]
    /// Whether owners and parents are kept (else their stores are empty and never written), and
    /// whether a chain's top holds its owner (`Lineage.chains`).
    let keepOwners: Bool, keepParents: Bool, ownerAtTop: Bool
    // Made on first use (a vtable seed, a conflict): most C programs never need them.
    private(set) var pin: UnsafeMutablePointer<Int32>? = nil
    private(set) var pinnedByVtable: UnsafeMutablePointer<Bool>? = nil
    private(set) var hasVotes: UnsafeMutablePointer<Bool>? = nil
    var votes: [Int: [Int32: (n: UInt32, type: Int32)]] = [:]   // per block, per canonical type
    var queue: [Int32] = []
    private var canonical: [Int32] = []            // per type: id of its name (types repeat per compile unit)
    private var canonicalIDs: [String: Int32] = [:]
    private var labelOf: [Int32] = []              // per pointee type: the type to label blocks with
    // Layouts: per type (by index), slots [start, start + count) of `pool`, element size.
    private var layoutStart: [Int32] = [], layoutCount: [Int32] = [], layoutSize: [UInt64] = []
    private var pool: UnsafeMutableBufferPointer<Slot> = .init(start: nil, count: 0)
    private var byName: [String: Int32] = [:]

    init(table: TypeTable, blocks: Blocks, memory: MemoryImage, lineage: TypePropagation.Lineage) {
        self.table = table; self.blocks = blocks; self.memory = memory
        let n = blocks.count
        self.n = n
        keepOwners = lineage == .owners || lineage == .full; keepParents = lineage == .full || lineage == .chains
        ownerAtTop = lineage == .chains
        // The labels' own arrays, written through their buffers: handed over at the end, not copied.
        typeStore = .init(repeating: -1, count: max(n, 1)); ambiguousStore = .init(repeating: false, count: max(n, 1))
        ownerStore = .init(repeating: -1, count: keepOwners ? max(n, 1) : 1); parentStore = .init(repeating: -1, count: keepParents ? max(n, 1) : 1)
        func base<T>(_ a: inout [T]) -> UnsafeMutablePointer<T> { a.withUnsafeMutableBufferPointer { $0.baseAddress! } }
        type = base(&typeStore); ambiguous = base(&ambiguousStore); owner = base(&ownerStore); parent = base(&parentStore)
        support = Engine.buffer(n, 0)
        canonical = .init(repeating: -2, count: table.count)
        labelOf = .init(repeating: -2, count: table.count)
        // Types by name (the first with a layout), for libstdc++'s storage members and node types.
        var byName: [String: Int32] = [:]
        for (i, e) in table.entries.enumerated() where e.kind != .typedef && e.kind != .qualified {
            if let j = byName[e.name], table[j].size > 0 || e.size == 0 { continue }
            byName[e.name] = Int32(i)
        }
        self.byName = byName
        // A hash table's nodes: std::_Hashtable<K, V, ...> links std::__detail::_Hash_node<V, C>
        // through their base _Hash_node_base (as a map links _Rb_tree_node<V> through its base).
        for t in 0..<Int32(table.count) where table[t].kind == .structure && table[t].name.hasPrefix("std::_Hashtable<") {
            guard let args = TypeTable.templateArguments(table[t].name), args.count >= 2 else { continue }
            let nodes = ["false", "true"].compactMap { byName["std::__detail::_Hash_node<\(args[1]), \($0)>"] }
            if !nodes.isEmpty { self.table.update(t) { $0.nodes += nodes } }
        }
        var all: [Slot] = []
        layoutStart = .init(repeating: 0, count: table.count)
        layoutCount = .init(repeating: 0, count: table.count)
        layoutSize = .init(repeating: 0, count: table.count)
        for t in 0..<Int32(table.count) {
            let s = table.strip(t)
            layoutSize[Int(t)] = table.size(s)
            if s != t { continue }
            var slots: [Slot] = []
            // A node type's own base-class pointers point to nodes like it.
            collect(s, 0, false, &slots, hints: nodeTypes.contains(canon(s)) ? [s] : [], depth: 0)
            layoutStart[Int(t)] = Int32(all.count); layoutCount[Int(t)] = Int32(slots.count)
            all.append(contentsOf: slots)
        }
        for t in 0..<table.count {   // typedefs and qualified types share their target's layout
            let s = table.strip(Int32(t))
            if s >= 0 && s != Int32(t) { layoutStart[t] = layoutStart[Int(s)]; layoutCount[t] = layoutCount[Int(s)] }
        }
        pool = .allocate(capacity: max(all.count, 1))
        _ = pool.initialize(from: all)
    }

    /// A buffer of `v` per block (at least one).
    private static func buffer<T>(_ n: Int, _ v: T) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(n, 1))
        p.initialize(repeating: v, count: max(n, 1))
        return p
    }
    /// The same, for the buffers made only when first needed (freed with the engine).
    private func makeBuffer<T>(_ v: T) -> UnsafeMutablePointer<T> { Engine.buffer(n, v) }

    /// Block `k` is an object of class `type` (its first word is that class's vtable).
    func pinByVtable(_ k: Int, _ type: Int32) {
        let pins = pin ?? makeBuffer(Int32(-1)), byVtable = pinnedByVtable ?? makeBuffer(false)
        pin = pins; pinnedByVtable = byVtable
        pins[k] = type; byVtable[k] = true
    }

    private var released = false
    deinit {
        pool.deallocate()
        guard !released else { return }
        support.deallocate(); pin?.deallocate(); pinnedByVtable?.deallocate(); hasVotes?.deallocate()
    }

    /// The labels, with their confidence and element counts: the arrays the propagation wrote are
    /// handed over, and its other buffers freed first, so that the result and the propagation's
    /// state are not held at once. The engine is done after this.
    func result() -> (type: [Int32], count: CountColumn, confidence: [TypeConfidence], ambiguous: [Bool], owner: [Int32], parent: [Int32]) {
        precondition(!released)
        support.deallocate(); pin?.deallocate(); hasVotes?.deallocate()
        bigSupport = [:]
        var confidence = [TypeConfidence](repeating: .unknown, count: n)
        var count = CountColumn(repeating: 1, count: n)
        for k in 0..<n where type[k] >= 0 {
            confidence[k] = pinnedByVtable?[k] == true ? .vtable : .declared
            count[k] = elements(k)
        }
        pinnedByVtable?.deallocate()
        func take<T>(_ a: inout [T]) -> [T] { var out: [T] = []; swap(&out, &a); if n == 0 { out = [] }; return out }
        let ambiguous = take(&ambiguousStore), type = take(&typeStore)
        let owner = keepOwners ? take(&ownerStore) : [], parent = keepParents ? take(&parentStore) : []
        released = true
        return (type, count, confidence, ambiguous, owner, parent)
    }

    func reset() {
        type.update(repeating: -1, count: max(n, 1)); ambiguous.update(repeating: false, count: max(n, 1))
        support.update(repeating: 0, count: max(n, 1)); bigSupport = [:]
        if keepOwners { owner.update(repeating: -1, count: max(n, 1)) }
        if keepParents { parent.update(repeating: -1, count: max(n, 1)) }
        hasVotes?.update(repeating: false, count: max(n, 1))
        votes = [:]
        queue = []
    }

    func canon(_ t: Int32) -> Int32 {
        if canonical[Int(t)] != -2 { return canonical[Int(t)] }
        let name = table.name(table.strip(t) >= 0 ? table.strip(t) : t)
        let id = canonicalIDs[name] ?? Int32(canonicalIDs.count)
        canonicalIDs[name] = id
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
            // libstdc++'s raw storage of a T (a node's value, a make_shared block's object)
            if let held = table.storedElement(s, named: { byName[$0] }) {
                collect(held, base, amb, &out, hints: hints, depth: depth + 1)
                return
            }
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
        let usable = blocks.userEnd(k) - blocks.userStart(k)
        guard size > 0, usable >= 2 * size, usable > 24 else { return 1 }
        return UInt32(min(usable / size, UInt64(UInt32.max)))
    }

    /// A pointer of type `target*` reaches block `k` (at its start).
    @inline(__always) func reach(_ k: Int, _ target: Int32, ambiguous amb: Bool, owner o: Int32, from: Int32) {
        let current = type[k]
        if current < 0 {
            let p = pin?[k] ?? -1
            type[k] = p >= 0 ? p : target
            ambiguous[k] = amb && p < 0
            if keepOwners { owner[k] = o }
            if keepParents { parent[k] = from >= 0 || !ownerAtTop ? from : (o >= 0 ? -2 - o : -1) }
            support[k] = 1
            if p >= 0 && canon(p) != canon(target) && pinnedByVtable?[k] != true { vote(k, target) }
            queue.append(Int32(k))
            return
        }
        if current == target || canon(current) == canon(target) {
            if support[k] < 255 { support[k] += 1 } else { bigSupport[k, default: 255] += 1 }
            if !amb { ambiguous[k] = false }
            if hasVotes?[k] == true { votes[k]![canon(target), default: (0, target)].n += 1 }
            return
        }
        // A vtable's class overrides any declared base class of it.
        if pinnedByVtable?[k] == true { return }
        vote(k, target)
    }

    private func supportOf(_ k: Int) -> UInt32 { support[k] < 255 ? UInt32(support[k]) : bigSupport[k] ?? 255 }

    private func vote(_ k: Int, _ target: Int32) {
        let voted = hasVotes ?? makeBuffer(false)
        hasVotes = voted
        if !voted[k] { votes[k] = [canon(type[k]): (supportOf(k), type[k])]; voted[k] = true }
        votes[k]![canon(target), default: (0, target)].n += 1
    }

    /// Type the memory of a root.
    func root(_ r: TypedRoot, owner o: Int32) {
        guard r.type >= 0 else { return }
        switch r.location {
        case .value(let v):
            let s = table.strip(r.type)
            guard s >= 0, table[s].kind == .pointer, table[s].target >= 0 else { return }
            let l = labelType(table[s].target)
            if l >= 0, let k = blocks.block(containing: v), blocks.userStart(k) == v { reach(k, l, ambiguous: false, owner: o, from: -1) }
        case .memory(let a):
            let t = Int(r.type), size = layoutSize[t]
            guard layoutCount[t] > 0, let region = memory.region(containing: a, length: max(size, 8)) else { return }
            scan(region, a, t, count: 1, end: a + max(size, 8), owner: o, ambiguous: false, from: -1)
        }
    }

    @inline(__always) private func scan(_ region: Region, _ a: UInt64, _ t: Int, count: UInt64, end: UInt64, owner o: Int32, ambiguous amb: Bool, from: Int32) {
        let base = region.base, rs = region.start, re = min(region.end, end)
        let size = layoutSize[t], first = Int(layoutStart[t]), slots = Int(layoutCount[t])
        let pool = self.pool
        for e in 0..<count {
            let at = a + e * size
            for i in first..<first + slots {
                let sl = pool[i]
                let w = at + sl.offset
                guard w >= rs, w + 8 <= re else { continue }
                let v = base.loadUnaligned(fromByteOffset: Int(w - rs), as: UInt64.self)
                guard v & 7 == 0, v != 0, let k = blocks.block(containing: v), blocks.userStart(k) == v else { continue }
                reach(k, sl.target, ambiguous: sl.ambiguous || amb, owner: o, from: from)
            }
        }
    }

    func drain() {
        while let k32 = queue.popLast() {
            let k = Int(k32)
            let t = Int(type[k])
            let size = layoutSize[t]
            guard layoutCount[t] > 0, size > 0 else { continue }
            let start = blocks.userStart(k), usable = blocks.userEnd(k) - start
            guard let region = memory.region(containing: start, length: min(usable, size)) else { continue }
            scan(region, start, t, count: UInt64(elements(k)), end: blocks.userEnd(k), owner: keepOwners ? owner[k] : -1, ambiguous: ambiguous[k], from: Int32(k))
        }
    }

    /// After a round: pin every conflicting block to its majority type. True if a label changed.
    func settle() -> Bool {
        var changed = false
        for (k, v) in votes where pinnedByVtable?[k] != true {
            let mine = canon(type[k])
            guard let top = v.values.map(\.n).max(), (v[mine]?.n ?? 0) < top,
                  let best = v.first(where: { $0.value.n == top })?.value.type else { continue }
            let pins = pin ?? makeBuffer(Int32(-1))
            pin = pins
            if pins[k] < 0 || canon(pins[k]) != canon(best) {
                pins[k] = best
                changed = true
            }
        }
        return changed
    }
}
