/// Allocator-independent view of a heap: what every analysis (stat, chunks, leaks, types, diff)
/// works on. Nothing here knows glibc; an allocator walker fills these types in.

/// What state a chunk is in. The raw values are stable (snapshot files store them).
public enum ChunkState: UInt8, CaseIterable, Sendable, Comparable {
    /// Handed to the program and not freed (in a heap, or in a mapping of its own).
    case inUse = 0
    /// Freed, and kept in a per-thread cache.
    case cachedFree
    /// Freed, and kept in the allocator's free lists.
    case allocatorFree
    /// The allocator's own data inside a heap.
    case metadata
    /// Never handed out: the untouched end of a heap.
    case top

    /// Name used in output and accepted by `--state`.
    public var name: String {
        switch self {
        case .inUse: return "in_use"
        case .cachedFree: return "cached_free"
        case .allocatorFree: return "free"
        case .metadata: return "metadata"
        case .top: return "top"
        }
    }
    public init?(name: String) {
        guard let s = ChunkState.allCases.first(where: { $0.name == name }) else { return nil }
        self = s
    }
    /// Outstanding = handed to the program and not freed.
    public var isOutstanding: Bool { self == .inUse }
    /// Free chunks the allocator keeps (caches, free lists, top).
    public var isFree: Bool { self == .cachedFree || self == .allocatorFree || self == .top }
    public static func < (a: ChunkState, b: ChunkState) -> Bool { a.rawValue < b.rawValue }
}

/// A chunk's kind: where the allocator keeps it, in its own words (an index into the
/// allocator's `AllocatorKinds`). Each kind has one `ChunkState`.
public struct ChunkKind: RawRepresentable, Hashable, Comparable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(_ v: UInt8) { rawValue = v }
    public static func < (a: ChunkKind, b: ChunkKind) -> Bool { a.rawValue < b.rawValue }
}

/// The kinds of chunk one allocator tells apart, with what each means in shared terms: the
/// allocator's name for it, its state, the bytes of it the program cannot use, and whether such a
/// chunk is a mapping of its own.
public struct AllocatorKinds: Sendable, Equatable {
    public struct Kind: Sendable, Equatable {
        public var name: String
        public var state: ChunkState
        public var usableLoss: UInt64
        public var ownMapping: Bool
        public init(name: String, state: ChunkState, usableLoss: UInt64, ownMapping: Bool = false) {
            self.name = name; self.state = state; self.usableLoss = usableLoss; self.ownMapping = ownMapping
        }
    }
    /// "glibc".
    public var allocator: String
    public var kinds: [Kind]
    /// Bytes between a chunk's address and the pointer the program holds.
    public var userOffset: UInt64
    public init(allocator: String, kinds: [Kind], userOffset: UInt64) {
        self.allocator = allocator; self.kinds = kinds; self.userOffset = userOffset
    }
    public static let none = AllocatorKinds(allocator: "", kinds: [], userOffset: 0)

    public var all: [ChunkKind] { kinds.indices.map { ChunkKind(UInt8($0)) } }
    public func name(_ k: ChunkKind) -> String { Int(k.rawValue) < kinds.count ? kinds[Int(k.rawValue)].name : "kind\(k.rawValue)" }
    public func state(_ k: ChunkKind) -> ChunkState { Int(k.rawValue) < kinds.count ? kinds[Int(k.rawValue)].state : .metadata }
    public func kind(named n: String) -> ChunkKind? { kinds.firstIndex { $0.name == n }.map { ChunkKind(UInt8($0)) } }
    /// The kinds of free chunks, in the allocator's order (the columns of a summary).
    public var freeKinds: [ChunkKind] { all.filter { let s = state($0); return s == .cachedFree || s == .allocatorFree } }
    /// The kinds whose chunks are mappings of their own.
    public var ownMappingKinds: [ChunkKind] { all.filter { kinds[Int($0.rawValue)].ownMapping } }
}

/// Every chunk of the heap, one entry per chunk, sorted by address. Struct-of-arrays, because a
/// production heap has tens of millions of chunks: 5 bytes and a few bits per chunk (a chunk's
/// address is 4 bytes above its group's; its size is where the next one starts, stored only
/// where it is not; arenas are runs).
public struct ChunkTable: Sendable {
    public private(set) var address = AddressColumn() // chunk header address
    public private(set) var size = SizeColumn()      // whole chunk size in bytes
    public private(set) var kind: [ChunkKind] = []
    public private(set) var arena = ArenaColumn()    // index into HeapReport.arenas; `noArena` for chunks of no arena
    public static let noArena: UInt16 = .max

    /// What the kinds are (the allocator's table).
    public let kinds: AllocatorKinds
    /// Per kind id: its state and usable loss (256 entries, so that lookups need no bounds test).
    @usableFromInline let stateOf: [ChunkState]
    @usableFromInline let lossOf: [UInt64]
    /// Bytes between a chunk's header address and the pointer the program holds.
    public var userOffset: UInt64 { kinds.userOffset }

    public init(kinds: AllocatorKinds) {
        self.kinds = kinds
        stateOf = (0..<256).map { kinds.state(ChunkKind(UInt8($0))) }
        lossOf = (0..<256).map { $0 < kinds.kinds.count ? kinds.kinds[$0].usableLoss : 0 }
    }

    /// Adopt plain columns (tests, re-sorting). All four must have the same length and be in
    /// address order. (Plain arrays, not any collection: a generic initializer is not specialized
    /// across modules, and took 12.5 s for 10M chunks.)
    public init(address: [UInt64], size: [UInt64], kind: [ChunkKind], arena: [UInt16], kinds: AllocatorKinds) {
        precondition(address.count == size.count && size.count == kind.count && kind.count == arena.count)
        var b = Builder()
        b.reserve(address.count)
        for ((a, s), (k, ar)) in zip(zip(address, size), zip(kind, arena)) { b.append(a, s, k, ar) }
        self = b.table(kinds: kinds)
    }

    /// Fills a table a chunk at a time (how a walker makes one without holding plain columns).
    /// A group of 64 chunks is gathered in plain buffers and added to the columns at once (an
    /// array's append checks its buffer's uniqueness each time: four times a chunk, otherwise).
    public struct Builder {
        @usableFromInline final class Group {
            @usableFromInline let address = UnsafeMutablePointer<UInt64>.allocate(capacity: 64)
            @usableFromInline let kind = UnsafeMutablePointer<ChunkKind>.allocate(capacity: 64)
            @usableFromInline let offset = UnsafeMutablePointer<UInt32>.allocate(capacity: 64)
            deinit { address.deallocate(); kind.deallocate(); offset.deallocate() }
        }
        @usableFromInline let group = Group()
        @usableFromInline var inGroup = 0, count = 0
        @usableFromInline var followsWord: UInt64 = 0      // the group's bits
        @usableFromInline var lastAddress: UInt64 = 0, lastSize: UInt64 = 0
        @usableFromInline var kind: [ChunkKind] = [], follows: [UInt64] = [], stored: [UInt64] = []
        @usableFromInline var base: [UInt64] = [], wide: [Int32] = [], offset: [UInt32] = [], whole: [UInt64] = []
        @usableFromInline var runStart: [Int32] = [], runArena: [UInt16] = []
        /// No chunk was appended below the one before it (the table needs no sorting).
        public var isOrdered: Bool { ordered }
        @usableFromInline var ordered = true
        public init() {}
        public mutating func reserve(_ n: Int) {
            kind.reserveCapacity(n); offset.reserveCapacity(n)
            follows.reserveCapacity((n + 63) / 64); base.reserveCapacity((n + 63) / 64); wide.reserveCapacity((n + 63) / 64)
        }
        @inlinable @inline(__always)
        public mutating func append(_ a: UInt64, _ s: UInt64, _ k: ChunkKind, _ ar: UInt16) {
            precondition(count < Int(Int32.max))
            if count > 0 {   // the chunk before: its size is the gap to this one, or stored
                if a < lastAddress { ordered = false }
                if lastAddress &+ lastSize == a {
                    if inGroup > 0 { followsWord |= 1 << UInt64(inGroup - 1) } else { follows[follows.count - 1] |= 1 << 63 }
                } else { stored.append(lastSize) }
            }
            group.address[inGroup] = a; group.kind[inGroup] = k
            if runStart.isEmpty || runArena[runArena.count - 1] != ar { runStart.append(Int32(count)); runArena.append(ar) }
            lastAddress = a; lastSize = s
            inGroup += 1; count += 1
            if inGroup == 64 { flush() }
        }
        /// The group into the columns: its addresses 4 bytes above its first, or whole when one is
        /// below the first or 4 GiB or more above it.
        @usableFromInline mutating func flush() {
            guard inGroup > 0 else { return }
            let n = inGroup, first = group.address[0]
            var narrow = true
            for j in 0..<n {
                let d = group.address[j] &- first
                narrow = narrow && group.address[j] >= first && d < 1 << 32
                group.offset[j] = UInt32(truncatingIfNeeded: d)
            }
            if narrow { base.append(first); wide.append(-1) } else {
                base.append(0); wide.append(Int32(whole.count))
                whole.append(contentsOf: UnsafeBufferPointer(start: group.address, count: n))
            }
            offset.append(contentsOf: UnsafeBufferPointer(start: group.offset, count: n))
            kind.append(contentsOf: UnsafeBufferPointer(start: group.kind, count: n))
            follows.append(followsWord)
            followsWord = 0; inGroup = 0
        }
        /// The table (the builder is empty after it).
        public mutating func table(kinds: AllocatorKinds) -> ChunkTable {
            flush()
            if count > 0 { stored.append(lastSize) }
            var t = ChunkTable(kinds: kinds)
            let address = AddressColumn(base: base, wide: wide, offset: offset, whole: whole)
            t.address = address
            t.size = SizeColumn(address: address, follows: follows, stored: stored)
            t.kind = kind
            t.arena = ArenaColumn(runStart: runStart, runArena: runArena, count: count)
            self = Builder()
            return t
        }
    }

    @inlinable public var count: Int { kind.count }
    /// The chunk's state, in shared terms.
    @inlinable @inline(__always) public func state(_ i: Int) -> ChunkState { stateOf[Int(kind[i].rawValue)] }
    /// The allocator's name for the chunk's kind.
    public func kindName(_ i: Int) -> String { kinds.name(kind[i]) }
    @inlinable @inline(__always) public func isOutstanding(_ i: Int) -> Bool { state(i) == .inUse }
    @inline(__always) public func userAddress(_ i: Int) -> UInt64 { address[i] + userOffset }
    @inline(__always) public func usableSize(_ i: Int) -> UInt64 {
        let loss = lossOf[Int(kind[i].rawValue)], s = size[i]
        return s > loss ? s - loss : 0
    }
    /// Index of the chunk whose header starts exactly at `a`.
    public func index(ofChunkAt a: UInt64) -> Int? {
        let i = lowerBound(a)
        return i < count && address[i] == a ? i : nil
    }
    /// Index of the chunk whose [address, address+size) holds `a`.
    public func index(containing a: UInt64) -> Int? {
        let i = lowerBound(a &+ 1) - 1
        guard i >= 0, a < address[i] &+ size[i] else { return nil }
        return i
    }
    /// First index whose address is >= a.
    public func lowerBound(_ a: UInt64) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if address[mid] < a { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
    /// Restore address order after chunks were appended out of order (e.g. mmapped chunks).
    public mutating func sortByAddress() {
        var sorted = true
        for i in 1..<max(count, 1) where address[i - 1] > address[i] { sorted = false; break }
        if sorted { return }
        let order = address.indices.sorted { address[$0] < address[$1] }
        self = ChunkTable(address: order.map { address[$0] }, size: order.map { size[$0] }, kind: order.map { kind[$0] },
                          arena: order.map { arena[$0] }, kinds: kinds)
    }
}

/// Chunk sizes. In a heap a chunk ends where the next begins: its size is that gap, a bit per
/// chunk says so, and only the others' sizes are stored (a heap's last chunk, chunks mapped on
/// their own).
public struct SizeColumn: RandomAccessCollection, Sendable, Equatable {
    @usableFromInline let address: AddressColumn
    /// Bit i: chunk i ends where chunk i + 1 starts.
    @usableFromInline let follows: [UInt64]
    /// Per 64 chunks: the stored sizes of the chunks before them.
    @usableFromInline let rank: [Int32]
    @usableFromInline let stored: [UInt64]

    public init() { address = AddressColumn(); follows = []; rank = []; stored = [] }
    init(address: AddressColumn, follows: [UInt64], stored: [UInt64]) {
        self.address = address; self.follows = follows; self.stored = stored
        var rank = [Int32](repeating: 0, count: follows.count), before: Int32 = 0
        for w in 0..<follows.count { rank[w] = before; before &+= Int32(64 - follows[w].nonzeroBitCount) }
        self.rank = rank
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { address.count }
    @inlinable @inline(__always) public subscript(i: Int) -> UInt64 {
        precondition(i >= 0 && i < address.count)
        let w = follows[i >> 6], bit = UInt64(1) << UInt64(i & 63)
        if w & bit != 0 { return address[i + 1] &- address[i] }
        return stored[Int(rank[i >> 6]) + (~w & (bit &- 1)).nonzeroBitCount]
    }
    public static func == (a: SizeColumn, b: SizeColumn) -> Bool { a.elementsEqual(b) }

    /// Plain pointers to the column, for hot loops: valid while this column is held unchanged.
    @frozen public struct Reader {
        public let address: AddressColumn.Reader, follows: UnsafePointer<UInt64>, rank: UnsafePointer<Int32>, stored: UnsafePointer<UInt64>
        @inlinable @inline(__always) public func size(_ i: Int) -> UInt64 {
            let w = follows[i >> 6], bit = UInt64(1) << UInt64(i & 63)
            if w & bit != 0 { return address.address(i + 1) &- address.address(i) }
            return stored[Int(rank[i >> 6]) + (~w & (bit &- 1)).nonzeroBitCount]
        }
    }
    /// The reader of a column that the caller holds (and never changes) while it reads.
    public var reader: Reader {
        Reader(address: address.reader, follows: baseAddress(follows), rank: baseAddress(rank), stored: baseAddress(stored))
    }
}

/// The first element's address of an array the caller holds unchanged while it reads through it
/// (an empty one's: a word that is never read).
@usableFromInline func baseAddress<T>(_ a: [T]) -> UnsafePointer<T> {
    a.isEmpty ? noElements.assumingMemoryBound(to: T.self) : a.withUnsafeBufferPointer { $0.baseAddress! }
}
nonisolated(unsafe) private let noElements = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16))

/// Chunk addresses: per 64 chunks the least, and per chunk 4 bytes above it. A group of 64
/// chunks that spans 4 GiB or more (chunks mapped on their own, far apart) keeps its addresses whole.
public struct AddressColumn: RandomAccessCollection, Sendable, Equatable {
    @usableFromInline let base: [UInt64]     // per group
    @usableFromInline let wide: [Int32]      // per group: -1, or where its addresses start in `whole`
    @usableFromInline let offset: [UInt32]   // per chunk (0 in a wide group)
    @usableFromInline let whole: [UInt64]

    public init() { base = []; wide = []; offset = []; whole = [] }
    init(base: [UInt64], wide: [Int32], offset: [UInt32], whole: [UInt64]) {
        self.base = base; self.wide = wide; self.offset = offset; self.whole = whole
    }
    public var startIndex: Int { 0 }
    public var endIndex: Int { offset.count }
    @inlinable @inline(__always) public subscript(i: Int) -> UInt64 {
        precondition(i >= 0 && i < offset.count)
        let g = i >> 6, w = wide[g]
        return w < 0 ? base[g] &+ UInt64(offset[i]) : whole[Int(w) + (i & 63)]
    }
    public static func == (a: AddressColumn, b: AddressColumn) -> Bool { a.elementsEqual(b) }

    /// Plain pointers to the column, for hot loops: valid while this column is held unchanged.
    @frozen public struct Reader {
        public let base: UnsafePointer<UInt64>, wide: UnsafePointer<Int32>, offset: UnsafePointer<UInt32>, whole: UnsafePointer<UInt64>
        @inlinable @inline(__always) public func address(_ i: Int) -> UInt64 {
            let g = i >> 6, w = wide[g]
            return w < 0 ? base[g] &+ UInt64(offset[i]) : whole[Int(w) &+ (i & 63)]
        }
    }
    public var reader: Reader { Reader(base: baseAddress(base), wide: baseAddress(wide), offset: baseAddress(offset), whole: baseAddress(whole)) }
}

/// Chunk arenas, as runs of consecutive chunks of one arena (a heap is one run).
public struct ArenaColumn: RandomAccessCollection, Sendable, Equatable {
    /// The first chunk of each run, ascending (the first is 0), and its arena.
    let runStart: [Int32], runArena: [UInt16]
    let n: Int
    public init() { runStart = []; runArena = []; n = 0 }
    init(runStart: [Int32], runArena: [UInt16], count: Int) { self.runStart = runStart; self.runArena = runArena; n = count }

    public var startIndex: Int { 0 }
    public var endIndex: Int { n }
    public subscript(i: Int) -> UInt16 {
        precondition(i >= 0 && i < n)
        var lo = 0, hi = runStart.count   // the last run starting at or before i
        while hi - lo > 1 { let m = (lo + hi) >> 1; if Int(runStart[m]) <= i { lo = m } else { hi = m } }
        return runArena[lo]
    }
    /// The runs: chunks `range` are all of `arena`.
    public var runs: [(range: Range<Int>, arena: UInt16)] {
        runStart.indices.map { r in (Int(runStart[r])..<(r + 1 < runStart.count ? Int(runStart[r + 1]) : n), runArena[r]) }
    }
    public static func == (a: ArenaColumn, b: ArenaColumn) -> Bool { a.elementsEqual(b) }
}

/// Count and bytes.
public struct Tally: Sendable, Equatable {
    public var count: Int = 0
    public var bytes: UInt64 = 0
    public init(count: Int = 0, bytes: UInt64 = 0) { self.count = count; self.bytes = bytes }
    // (wrapping: tallies read from a hostile snapshot file must not trap when added up; real
    // ones are far from 2^63)
    public mutating func add(_ b: UInt64) { count &+= 1; bytes &+= b }
    public static func + (a: Tally, b: Tally) -> Tally { Tally(count: a.count &+ b.count, bytes: a.bytes &+ b.bytes) }
}

/// One contiguous piece of memory an arena carves chunks from.
public struct Segment: Sendable, Equatable {
    public var start: UInt64
    public var end: UInt64
    public init(start: UInt64, end: UInt64) { self.start = start; self.end = end }
}

/// One arena (allocator heap) and what its chunks add up to.
public struct ArenaSummary: Sendable {
    public var index: Int
    public var address: UInt64
    public var isMain: Bool
    public var systemBytes: UInt64
    public var segments: [Segment]
    public var attachedThreads: UInt64
    public var mutexHeld: Bool
    /// Tallies by kind, from the chunk walk.
    public var byKind: [ChunkKind: Tally]
    public var top: UInt64          // top chunk address
    public var topSize: UInt64
    public init(index: Int, address: UInt64, isMain: Bool, systemBytes: UInt64, segments: [Segment],
                attachedThreads: UInt64, mutexHeld: Bool, byKind: [ChunkKind: Tally], top: UInt64, topSize: UInt64) {
        self.index = index; self.address = address; self.isMain = isMain; self.systemBytes = systemBytes
        self.segments = segments; self.attachedThreads = attachedThreads; self.mutexHeld = mutexHeld
        self.byKind = byKind; self.top = top; self.topSize = topSize
    }
}

/// glibc's `struct mallinfo2`, field names as glibc spells them. Other allocators fill what they can.
public struct MallInfo2: Sendable, Equatable {
    public var arena: UInt64 = 0, ordblks: UInt64 = 0, smblks: UInt64 = 0, hblks: UInt64 = 0, hblkhd: UInt64 = 0
    public var usmblks: UInt64 = 0, fsmblks: UInt64 = 0, uordblks: UInt64 = 0, fordblks: UInt64 = 0, keepcost: UInt64 = 0
    public init() {}
    public static let fieldNames = ["arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"]
    public var fields: [(String, UInt64)] {
        [("arena", arena), ("ordblks", ordblks), ("smblks", smblks), ("hblks", hblks), ("hblkhd", hblkhd),
         ("usmblks", usmblks), ("fsmblks", fsmblks), ("uordblks", uordblks), ("fordblks", fordblks), ("keepcost", keepcost)]
    }
}

/// Something wrong or doubtful found while walking; the walk goes on.
public struct HeapWarning: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case corruptChunk = "corrupt_chunk"         // bad size/alignment in a chunk header
        case corruptList = "corrupt_list"           // a free list points somewhere wrong
        case listCycle = "list_cycle"               // a free list loops
        case countMismatch = "count_mismatch"       // a cache's count disagrees with its list
        case unsettled = "unsettled"                // caught mid-update (lock held, thread in malloc)
        case unlistedFree = "unlisted_free"         // chunk marked free but in no list
        case corruptArena = "corrupt_arena"         // an arena's or mp_'s own fields are impossible (top, system_mem, sbrk_base)
        case totalsMismatch = "totals_mismatch"     // walk totals disagree with the allocator's counters
        case unreadable = "unreadable"              // memory that could not be copied
    }
    public var kind: Kind
    public var address: UInt64?
    public var message: String
    public init(_ kind: Kind, _ address: UInt64?, _ message: String) { self.kind = kind; self.address = address; self.message = message }

    /// At most `perKind` warnings of each kind (the first ones), then one saying how many more
    /// there were: a heap corrupted everywhere must not make a report of millions of lines.
    public static func bounded(_ ws: [HeapWarning], perKind: Int = 1000) -> [HeapWarning] {
        var seen: [Kind: Int] = [:]
        var out: [HeapWarning] = []
        for w in ws {
            let n = seen[w.kind, default: 0] + 1
            seen[w.kind] = n
            if n <= perKind { out.append(w) }
        }
        for (k, n) in seen.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where n > perKind {
            out.append(HeapWarning(k, nil, "\(n - perKind) more \(k.rawValue) warnings not listed"))
        }
        return out
    }
}

/// A thread of the target at the moment it was stopped.
public struct ThreadInfo: Sendable {
    public var tid: Int32
    public var pc: UInt64
    public var sp: UInt64
    public var threadPointer: UInt64
    public var cacheAddress: UInt64?   // its per-thread cache (user address), if it has one
    public init(tid: Int32, pc: UInt64, sp: UInt64, threadPointer: UInt64, cacheAddress: UInt64?) {
        self.tid = tid; self.pc = pc; self.sp = sp; self.threadPointer = threadPointer; self.cacheAddress = cacheAddress
    }
}

/// A thread that has exited while its stack stays mapped: either nobody has joined it yet (the
/// thread library must keep its descriptor and stack until pthread_join), or it was joined or
/// detached and its stack waits in the library's cache for reuse.
public struct ExitedThread: Sendable, Equatable {
    public enum State: UInt8, Sendable { case unjoined = 0, cached = 1 }
    /// The thread descriptor (what pthread_self() returned in the thread).
    public var descriptor: UInt64
    /// The whole stack mapping, guard page included.
    public var start: UInt64
    public var end: UInt64
    public var state: State
    /// An address inside the heap block the thread library allocated for the thread and frees at
    /// join (glibc: its dtv, calloc'ed by pthread_create); 0 if none.
    public var heapBlock: UInt64
    public init(descriptor: UInt64, start: UInt64, end: UInt64, state: State, heapBlock: UInt64 = 0) {
        self.descriptor = descriptor; self.start = start; self.end = end; self.state = state; self.heapBlock = heapBlock
    }
    public var bytes: UInt64 { end - start }
}

/// What an allocator walker learned about a heap.
public struct HeapWalk: Sendable {
    public var arenas: [ArenaSummary]
    public var mmapped: Tally
    public var mallinfo2: MallInfo2
    public var chunks: ChunkTable
    public var threads: [ThreadInfo]
    public var warnings: [HeapWarning]
    /// Threads that have exited but whose stacks (with their descriptors) are still mapped; nil
    /// when the thread library's descriptors could not be read (unknown layout).
    public var exitedThreads: [ExitedThread]?
    /// Free memory the allocator would give back to the system if asked to trim (glibc:
    /// malloc_trim(0)), as the allocator computes it.
    public var trimmableBytes: UInt64 = 0
    public init(arenas: [ArenaSummary], mmapped: Tally, mallinfo2: MallInfo2, chunks: ChunkTable,
                threads: [ThreadInfo], warnings: [HeapWarning], exitedThreads: [ExitedThread]? = nil, trimmableBytes: UInt64 = 0) {
        self.arenas = arenas; self.mmapped = mmapped; self.mallinfo2 = mallinfo2
        self.chunks = chunks; self.threads = threads; self.warnings = warnings; self.exitedThreads = exitedThreads
        self.trimmableBytes = trimmableBytes
    }
}

/// What an inspection copied of the target's memory besides the heap, and what it left out.
public struct CopyAccount: Sendable, Equatable {
    /// Bytes copied besides the heap (stacks, module data, other anonymous memory).
    public var copiedBytes: UInt64 = 0
    /// Shared writable mappings (rw-s) not copied (copied with --shared-roots).
    public var sharedBytes: UInt64 = 0
    /// Private pages never written (not resident, not swapped): zeros, or a file's bytes as read from it; not copied.
    public var unresidentBytes: UInt64 = 0
    /// Stack below the threads' stack pointers (less the red zone): dead, not copied.
    public var belowStackPointerBytes: UInt64 = 0
    /// Residency was known per mapping only (pagemap unreadable: no CAP_DAC_READ_SEARCH for
    /// another user's process), so mappings with any page in memory were copied whole.
    public var residencyPerMapping = false
    public init() {}
}

/// Everything one inspection learned: the walk, and how it was obtained.
public struct HeapReport: Sendable {
    public var pid: Int32
    /// The whole time the target was stopped, over every attempt.
    public var pauseMicroseconds: UInt64
    public var attempts: Int
    /// How long each attempt stopped the target (empty when not recorded, as in older snapshots).
    public var attemptPauses: [UInt64] = []
    /// Time spent faulting in the copy buffers before the stops (0 when not recorded).
    public var bufferFaultMicroseconds: UInt64 = 0
    /// The --spill directory the copy went to (nil: anonymous memory).
    public var spilledTo: String? = nil
    /// The stop budget the inspection ran under (--max-stop), 0 if unknown.
    public var stopBudgetMicroseconds: UInt64 = 0
    /// What stopping the target did to it that the program can notice (calls that returned EINTR),
    /// and what heapscope did to check (a thread stopped to read its seccomp filter).
    public var sideEffects: [String] = []
    /// What was copied besides the heap (nil when only the heap was: stat, watch).
    public var beyondHeap: CopyAccount? = nil
    public var allocator: String          // "glibc"
    public var allocatorVersion: String   // "2.36"
    public var discovery: String          // how the allocator's roots were found
    public var heap: HeapWalk
    public var copiedBytes: Int
    public var analysisMicroseconds: UInt64
    /// The core file read instead of a live process (nothing was stopped then).
    public var coreFile: String? = nil
    /// Where the process's resident memory went (live processes; nil for a core file).
    public var memory: MemoryAccount? = nil
    public init(pid: Int32, pauseMicroseconds: UInt64, attempts: Int, allocator: String, allocatorVersion: String,
                discovery: String, heap: HeapWalk, copiedBytes: Int, analysisMicroseconds: UInt64) {
        self.pid = pid; self.pauseMicroseconds = pauseMicroseconds; self.attempts = attempts; self.allocator = allocator
        self.allocatorVersion = allocatorVersion; self.discovery = discovery; self.heap = heap
        self.copiedBytes = copiedBytes; self.analysisMicroseconds = analysisMicroseconds
    }
    public var arenas: [ArenaSummary] { heap.arenas }
    public var mmapped: Tally { heap.mmapped }
    public var mallinfo2: MallInfo2 { heap.mallinfo2 }
    public var chunks: ChunkTable { heap.chunks }
    public var threads: [ThreadInfo] { heap.threads }
    public var warnings: [HeapWarning] { heap.warnings }
    /// Tallies by kind over all arenas and the chunks of no arena (mapped on their own).
    public var totals: [ChunkKind: Tally] {
        var t: [ChunkKind: Tally] = [:]
        for a in arenas { for (k, v) in a.byKind { t[k, default: Tally()] = t[k, default: Tally()] + v } }
        if mmapped.count > 0, let k = chunks.kinds.ownMappingKinds.first { t[k] = mmapped }
        return t
    }
    /// Tallies by state over all arenas and the chunks of no arena.
    public var totalsByState: [ChunkState: Tally] {
        var t: [ChunkState: Tally] = [:]
        for (k, v) in totals { let s = chunks.kinds.state(k); t[s, default: Tally()] = t[s, default: Tally()] + v }
        return t
    }
    /// The allocator's kinds.
    public var kinds: AllocatorKinds { heap.chunks.kinds }
}

extension HeapWalk {
    /// Exited threads by state: how many, and the bytes of their stack mappings.
    public func exitedTally(_ state: ExitedThread.State) -> Tally {
        (exitedThreads ?? []).filter { $0.state == state }.reduce(Tally()) { var t = $0; t.add($1.end - $1.start); return t }
    }
}

/// A struct's layout as a program's DWARF declares it: its size and, per member, the offset, the
/// size of one element and the element count (1, or N for an array member `T m[N]`).
public struct StructLayout: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public var offset: UInt64
        public var elementSize: UInt64
        public var count: UInt64
        public init(offset: UInt64, elementSize: UInt64, count: UInt64) {
            self.offset = offset; self.elementSize = elementSize; self.count = count
        }
    }
    public var size: UInt64
    public var members: [String: Member]
    public init(size: UInt64, members: [String: Member]) { self.size = size; self.members = members }
}

extension ArenaSummary {
    /// The chunks of this arena in `state` (every kind of it).
    public func tally(_ state: ChunkState, _ kinds: AllocatorKinds) -> Tally {
        byKind.reduce(Tally()) { kinds.state($1.key) == state ? $0 + $1.value : $0 }
    }
}

extension HeapReport {
    /// Every chunk in `state`; `ownMapping`: only those mapped on their own (true) or only those
    /// in a heap (false).
    public func total(_ state: ChunkState, ownMapping: Bool? = nil) -> Tally {
        let own = Set(kinds.ownMappingKinds)
        return totals.reduce(Tally()) { acc, e in
            guard kinds.state(e.key) == state, ownMapping.map({ $0 == own.contains(e.key) }) ?? true else { return acc }
            return acc + e.value
        }
    }
}

extension ChunkTable {
    /// A `--state` filter: the chunks of the kind so named, or in the state so named; nil if
    /// the name is neither.
    public func filter(named name: String) -> ((Int) -> Bool)? {
        if let k = kinds.kind(named: name) { return { self.kind[$0] == k } }
        if let s = ChunkState(name: name) { return { self.state($0) == s } }
        return nil
    }
}

/// The process's resident memory (RSS), PSS and swap, from /proc/PID/smaps, split by what holds
/// it: malloc's chunks by state (page by page, from /proc/PID/pagemap), its own metadata, chunks
/// mapped on their own, thread stacks, other anonymous memory (named by the module variable that
/// points into it, where one does), shared memory and file-backed mappings. The lines sum to
/// `rss` exactly: what the two reads disagree on (pages that changed between them) is `unexplained`.
public struct MemoryAccount: Sendable, Equatable {
    public struct Line: Sendable, Equatable {
        /// "malloc_in_use", "malloc_free", "malloc_top", "malloc_metadata", "mmapped_chunks",
        /// "thread_stacks", "anonymous", "shared", "file_backed", "unexplained".
        public var id: String
        /// What a person reads: "anonymous memory pointed to by usedpools (python3.11)".
        public var name: String
        public var rss: Int64, pss: Int64, swap: Int64
        /// Mappings (or parts of them) counted here.
        public var mappings: Int
        public init(id: String, name: String, rss: Int64, pss: Int64, swap: Int64, mappings: Int) {
            self.id = id; self.name = name; self.rss = rss; self.pss = pss; self.swap = swap; self.mappings = mappings
        }
    }
    public var rss: UInt64, pss: UInt64, swap: UInt64
    public var lines: [Line]
    /// What malloc_trim(0) would return to the system, of the free memory (not resident bytes:
    /// a figure of the heap, shown beside the free lines).
    public var trimmable: UInt64
    /// Whether pages were told apart one by one (pagemap); without it a heap mapping's resident
    /// memory is one line.
    public var pageLevel: Bool
    public init(rss: UInt64, pss: UInt64, swap: UInt64, lines: [Line], trimmable: UInt64, pageLevel: Bool) {
        self.rss = rss; self.pss = pss; self.swap = swap; self.lines = lines; self.trimmable = trimmable; self.pageLevel = pageLevel
    }
    public func line(_ id: String) -> Line? { lines.first { $0.id == id } }

    /// What a line id means, as `stat` prints it.
    public static func plainName(_ id: String) -> String {
        switch id {
        case "malloc_in_use": return "malloc: chunks in use"
        case "malloc_free": return "malloc: free chunks (bins and caches)"
        case "malloc_top": return "malloc: top of the arenas"
        case "malloc_metadata": return "malloc: its own (tcache, arena headers)"
        case "malloc_heap": return "malloc: heaps (pages not told apart: pagemap unreadable)"
        case "mmapped_chunks": return "malloc: chunks mapped on their own"
        case "thread_stacks": return "thread stacks"
        case "anonymous": return "other anonymous memory"
        case "shared": return "shared memory"
        case "file_backed": return "modules (code, data, .bss) and mapped files"
        case "unexplained": return "unexplained (changed between the reads)"
        default: return id
        }
    }
}
