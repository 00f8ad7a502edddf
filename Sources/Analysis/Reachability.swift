import HeapModel
import ProcessAccess

/// Valgrind memcheck's leak classes (`--leak-check=full`, `--leak-check-heuristics=none`).
public enum LeakClass: UInt8, Sendable, CaseIterable {
    /// A start-pointer chain leads to it from a root.
    case stillReachable
    /// Only chains that use an interior pointer lead to it from a root.
    case possiblyLost
    /// No chain from a root; reached from a definitely lost block.
    case indirectlyLost
    /// No chain from a root, nor from another lost block (the head of a leaked structure).
    case definitelyLost

    /// In sentences: "possibly lost".
    public var words: String { String(name.map { $0 == "_" ? " " : $0 }) }
    /// Name in output and JSON.
    public var name: String {
        switch self {
        case .stillReachable: return "still_reachable"
        case .possiblyLost: return "possibly_lost"
        case .indirectlyLost: return "indirectly_lost"
        case .definitelyLost: return "definitely_lost"
        }
    }
}

/// Where root words come from (each reported as its own class; `anonymous` can be excluded).
public enum RootKind: String, Sendable, CaseIterable {
    case registers, stack, tls, moduleData = "module_data", anonymous, shared
}

/// A range of copied memory whose aligned words are roots.
public struct RootRange: Sendable {
    public var start: UInt64
    public var end: UInt64
    public var kind: RootKind
    public var label: String      // e.g. "thread 1234 stack", "/usr/lib/libfoo.so .data"
    public init(start: UInt64, end: UInt64, kind: RootKind, label: String) {
        self.start = start; self.end = end; self.kind = kind; self.label = label
    }
}

/// The blocks a leak check is about: outstanding chunks as the program sees them, [user address,
/// user address + usable size), in address order. They are read from the chunk table's own
/// columns (shared, not copied): per block only its chunk's index is kept (4 bytes), and per
/// chunk one bit says whether it is a block (with a rank count per 64 chunks, so a chunk's block
/// number takes a few steps). An index finds the block holding any address: per span of the
/// address space that holds blocks, per 4 KiB page, the first chunk whose user address is at or
/// after the page's start; a binary search over the chunks' addresses between two pages does the rest.
public struct Blocks: Sendable {
    @usableFromInline let storage: BlockStorage
    /// The raw view the hot loops use (valid while this value is alive).
    var raw: BlockStorage.Raw { storage.raw }

    /// Index of each block in the chunk table it came from (`chunk[b]`).
    public var chunk: Chunks { Chunks(storage: storage) }
    /// Each block's user address (`start[b]`) and end (`end[b]`), read from the chunk table.
    public var start: Starts { Starts(storage: storage) }
    public var end: Ends { Ends(storage: storage) }

    public struct Chunks: RandomAccessCollection, Sendable {
        public var startIndex: Int { 0 }
        @inlinable public var endIndex: Int { storage.raw.count }
        @usableFromInline let storage: BlockStorage
        @inlinable @inline(__always) public subscript(b: Int) -> Int32 { precondition(b >= 0 && b < storage.raw.count); return storage.raw.chunk[b] }
    }
    public struct Starts: RandomAccessCollection, Sendable {
        public var startIndex: Int { 0 }
        @inlinable public var endIndex: Int { storage.raw.count }
        @usableFromInline let storage: BlockStorage
        @inlinable @inline(__always) public subscript(b: Int) -> UInt64 { precondition(b >= 0 && b < storage.raw.count); return storage.raw.start(b) }
    }
    public struct Ends: RandomAccessCollection, Sendable {
        public var startIndex: Int { 0 }
        @inlinable public var endIndex: Int { storage.raw.count }
        @usableFromInline let storage: BlockStorage
        @inlinable @inline(__always) public subscript(b: Int) -> UInt64 { precondition(b >= 0 && b < storage.raw.count); return storage.raw.end(b) }
    }

    /// The outstanding chunks of `table`: in use, in a heap or mapped on their own (the
    /// allocator's own chunks are metadata, not among them).
    public init(_ table: ChunkTable) { self.init(table, split: nil) }

    /// `split`: where the second of the two pieces that find the blocks starts (for tests).
    init(_ table: ChunkTable, split: Int?) {
        let loss = (0..<256).map { $0 < table.kinds.kinds.count ? table.kinds.kinds[$0].usableLoss : UInt64(0) }
        let outstanding = (0..<256).map { table.kinds.state(ChunkKind(UInt8($0))) == .inUse }
        storage = BlockStorage(address: table.address, size: table.size, kind: table.kind, loss: loss, offset: table.userOffset,
                               outstanding: outstanding, split: split)
    }

    /// Blocks given directly (sorted, non-overlapping): for tests and other allocators.
    public init(start: [UInt64], size: [UInt64]) {
        precondition(start.count == size.count)
        let t = ChunkTable(address: start, size: size, kind: [ChunkKind](repeating: ChunkKind(0), count: start.count),
                           arena: [UInt16](repeating: 0, count: start.count), kinds: .none)
        storage = BlockStorage(address: t.address, size: t.size, kind: t.kind, loss: [UInt64](repeating: 0, count: 256), offset: 0,
                               outstanding: [Bool](repeating: true, count: 256))
    }

    @inlinable public var count: Int { storage.raw.count }

    /// `start[b]` and `end[b]` without making a view (for loops over every block).
    @inlinable @inline(__always) public func userStart(_ b: Int) -> UInt64 { precondition(b >= 0 && b < storage.raw.count); return storage.raw.start(b) }
    @inlinable @inline(__always) public func userEnd(_ b: Int) -> UInt64 { precondition(b >= 0 && b < storage.raw.count); return storage.raw.end(b) }

    /// The block number of chunk `c` of the table, nil if it is not a block.
    @inlinable @inline(__always) public func block(ofChunk c: Int) -> Int? { storage.raw.block(ofChunk: c) }

    /// The block holding address `a`, if any.
    @inlinable @inline(__always) public func block(containing a: UInt64) -> Int? { storage.raw.block(containing: a) }
}

/// What `Blocks` reads: the chunk table's columns (held here, so that their buffers stay put)
/// and the index, in buffers of its own; `raw` has plain pointers to all of it.
@usableFromInline final class BlockStorage: @unchecked Sendable {
    private let address: AddressColumn, size: SizeColumn, kind: [ChunkKind], loss: [UInt64]
    private let owned: [UnsafeMutableRawPointer]
    @usableFromInline let raw: Raw

    @usableFromInline struct Raw {
        @usableFromInline let address: AddressColumn.Reader, size: SizeColumn.Reader, kind: UnsafePointer<UInt8>, loss: UnsafePointer<UInt64>
        @usableFromInline let offset: UInt64
        @usableFromInline let count: Int, chunks: Int
        @usableFromInline let chunk: UnsafeMutablePointer<Int32>
        // Which chunks are blocks: a bit per chunk, and per 64 chunks the blocks before them.
        @usableFromInline let isBlock: UnsafeMutablePointer<UInt64>, rankBase: UnsafeMutablePointer<Int32>
        // Spans of the address space that hold blocks; per span, from spanPage[s] on in
        // pageFirst, per 4 KiB page the first chunk whose user address is at or after the page's
        // start; spanFirst[s] and spanLast[s] are the chunks of its first and last block.
        @usableFromInline let spans: Int
        /// The first span's base and the bytes from it to the last span's limit: most words a scan
        /// reads (zeros, small numbers, addresses of code and stacks) fall outside and are done at once.
        @usableFromInline let lowest: UInt64, extent: UInt64
        @usableFromInline let spanBase: UnsafeMutablePointer<UInt64>, spanLimit: UnsafeMutablePointer<UInt64>, spanPage: UnsafeMutablePointer<Int>
        @usableFromInline let spanFirst: UnsafeMutablePointer<Int32>, spanLast: UnsafeMutablePointer<Int32>
        @usableFromInline let pageFirst: UnsafeMutablePointer<Int32>

        @inlinable @inline(__always) func start(_ b: Int) -> UInt64 { address.address(Int(chunk[b])) &+ offset }
        @inlinable @inline(__always) func end(_ b: Int) -> UInt64 { end(ofChunk: Int(chunk[b])) }
        @inlinable @inline(__always) func end(ofChunk c: Int) -> UInt64 { address.address(c) &+ offset &+ size.size(c) &- loss[Int(kind[c])] }

        @inlinable @inline(__always) func block(ofChunk c: Int) -> Int? {
            guard c >= 0, c < chunks else { return nil }
            let w = isBlock[c >> 6], bit = UInt64(1) << UInt64(c & 63)
            guard w & bit != 0 else { return nil }
            return Int(rankBase[c >> 6]) + (w & (bit &- 1)).nonzeroBitCount
        }

        /// `block(containing:)`, trying first the block after `near` (a block number): pointers
        /// read in a row often point to blocks in a row.
        @inlinable @inline(__always) func block(containing a: UInt64, after near: Int) -> Int? {
            let n = near &+ 1
            if n >= 0 && n < count && a >= start(n) && a < end(n) { return n }
            return block(containing: a)
        }

        @inlinable @inline(__always) func block(containing a: UInt64) -> Int? {
            guard a &- lowest < extent else { return nil }
            var s = 0
            if spans > 1 {
                var lo = 0, hi = spans
                while lo < hi { let m = (lo + hi) >> 1; if spanLimit[m] <= a { lo = m + 1 } else { hi = m } }
                s = lo
            }
            guard s < spans, a >= spanBase[s], a < spanLimit[s] else { return nil }
            if spanPage[s] < 0 { return -spanPage[s] - 1 }   // one big block
            // The last chunk of the span whose user address is at most a: the one before the first
            // after a, searched from the first one at or after this page to the first one at or
            // after the next (the one before them all starts before this page).
            let p = spanPage[s] + Int((a - spanBase[s]) >> BlockStorage.pageShift)
            let first = Int(spanFirst[s])
            var lo = Int(pageFirst[p]), hi = Int(pageFirst[p + 1])
            // The first of them past a lies in [lo, hi]. Chunks of a page tend to be alike in size:
            // a guess from a's place in the page and two reads usually narrow that to two chunks.
            if hi - lo > 4 {
                let inPage = (a &- spanBase[s]) & ((1 << BlockStorage.pageShift) - 1)
                let g = lo + Int((inPage &* UInt64(hi - lo)) >> BlockStorage.pageShift)   // in [lo, hi)
                if address.address(g) &+ offset <= a {
                    lo = g + 1
                    if g + 2 < hi { if address.address(g + 2) &+ offset > a { hi = g + 2 } else { lo = g + 3 } }
                } else {
                    hi = g
                    if g - 2 >= lo { if address.address(g - 2) &+ offset <= a { lo = g - 1 } else { hi = g - 2 } }
                }
            }
            while lo < hi { let m = (lo + hi) >> 1; if address.address(m) &+ offset <= a { lo = m + 1 } else { hi = m } }
            let c = lo - 1
            guard c >= first, c <= Int(spanLast[s]), a < end(ofChunk: c) else { return nil }
            return block(ofChunk: c)
        }
    }

    @usableFromInline static let pageShift: UInt64 = 12
    private static let spanGap: UInt64 = 64 << 20
    /// Blocks larger than this get a span of their own without a page index (one entry per 4 KiB
    /// of a 1 TiB block would take 1 GiB).
    private static let bigBlock: UInt64 = 1 << 20

    /// `outstanding`: per kind, whether its chunks are blocks (those with usable bytes).
    /// `split`: the chunk where the second of two pieces of the bit set starts (rounded down to
    /// 64 chunks; for tests); nil: half way when there are a million chunks or more and two CPUs.
    init(address: AddressColumn, size: SizeColumn, kind: [ChunkKind], loss: [UInt64], offset: UInt64, outstanding: [Bool], split: Int? = nil) {
        precondition(address.count == size.count && size.count == kind.count && loss.count == 256 && outstanding.count == 256)
        self.address = address; self.size = size; self.kind = kind; self.loss = loss
        let n = address.count, words = (n + 63) / 64
        func allocate<T>(_ count: Int, _ v: T) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1)); p.initialize(repeating: v, count: max(count, 1)); return p
        }
        let tt = PhaseTrace()
        let bits = allocate(words, UInt64(0)), rank = allocate(words, Int32(0))
        // Room for every chunk (only the pages written become resident): each piece writes its
        // blocks' chunk numbers from its first chunk's place on, and the second piece's are then
        // moved down behind the first's.
        let chunk = UnsafeMutablePointer<Int32>.allocate(capacity: max(n, 1))
        let sz = size.reader, ad = address.reader   // (held by this object, unchanged)
        let kindBase = UnsafeRawPointer(BlockStorage.base(kind, or: bits)).assumingMemoryBound(to: UInt8.self)
        let lossBase = BlockStorage.base(loss, or: bits)
        let isOutstanding = outstanding.map { $0 ? UInt8(1) : 0 }
        let outBase = BlockStorage.base(isOutstanding, or: bits)
        /// Words [w0, w1) of the bit set, and their blocks' chunk numbers from `chunk + w0 * 64` on;
        /// ranks counted from the piece's start. Returns its blocks.
        let piece = { (w0: Int, w1: Int) -> Int in
            let out = chunk + w0 << 6
            var k = 0
            for w in w0..<w1 {
                rank[w] = Int32(k)
                var x: UInt64 = 0
                let lo = w << 6
                for i in lo..<min(lo + 64, n) {
                    let t = Int(kindBase[i])
                    guard outBase[t] != 0, sz.size(i) > lossBase[t] else { continue }   // (with usable bytes)
                    x |= 1 << UInt64(i & 63)
                    out[k] = Int32(i); k += 1
                }
                bits[w] = x
            }
            return k
        }
        let mid = split.map { min(max($0, 0), n) >> 6 } ?? (n >= 1 << 20 && BackgroundWork<Void>.secondCPU ? words / 2 : words)
        var second = mid < words ? BackgroundWork { piece(mid, words) } : nil
        let firstBlocks = piece(0, mid), secondBlocks = second?.wait() ?? 0
        if secondBlocks > 0 && firstBlocks < mid << 6 {
            (chunk + firstBlocks).update(from: chunk + mid << 6, count: secondBlocks)   // (moving down: no overlap ahead)
        }
        if firstBlocks > 0 { for w in mid..<words { rank[w] += Int32(firstBlocks) } }
        let blocks = firstBlocks + secondBlocks
        withExtendedLifetime((kind, loss, isOutstanding)) {}
        tt.mark("blocks: which chunks")
        // The index, in arrays first (their sizes are learned on the way), then in buffers.
        func start(_ b: Int) -> UInt64 { ad.address(Int(chunk[b])) &+ offset }
        func end(_ b: Int) -> UInt64 { let c = Int(chunk[b]); return ad.address(c) &+ offset &+ sz.size(c) &- loss[Int(kind[c].rawValue)] }
        var spanBase: [UInt64] = [], spanLimit: [UInt64] = [], spanPage: [Int] = [], spanFirst: [Int32] = [], spanLast: [Int32] = []
        var pageFirst: [Int32] = []
        var i = 0
        while i < blocks {
            if end(i) - start(i) > BlockStorage.bigBlock {
                spanBase.append(start(i)); spanLimit.append(end(i)); spanPage.append(-(i + 1))
                spanFirst.append(chunk[i]); spanLast.append(chunk[i])
                i += 1
                continue
            }
            let pageBase = start(i) & ~((1 << BlockStorage.pageShift) - 1)
            var j = i, limit = end(i)
            // (the next block's bounds read once each: this loop sees every block)
            var nextStart = j + 1 < blocks ? start(j + 1) : 0, nextEnd = j + 1 < blocks ? end(j + 1) : 0
            while j + 1 < blocks && nextEnd - nextStart <= BlockStorage.bigBlock && nextStart < limit &+ BlockStorage.spanGap {
                j += 1; limit = max(limit, nextEnd)
                if j + 1 < blocks { nextStart = start(j + 1); nextEnd = end(j + 1) }
            }
            let pages = Int((limit - pageBase + (1 << BlockStorage.pageShift) - 1) >> BlockStorage.pageShift)
            spanBase.append(pageBase); spanLimit.append(limit); spanPage.append(pageFirst.count)
            let first = Int(chunk[i]), last = Int(chunk[j])
            spanFirst.append(Int32(first)); spanLast.append(Int32(last))
            var c = first
            for p in 0...pages {
                let pageStart = pageBase + UInt64(p) << BlockStorage.pageShift
                while c <= last && ad.address(c) &+ offset < pageStart { c += 1 }
                pageFirst.append(Int32(c))
            }
            i = j + 1
        }
        tt.mark("blocks: index")
        var owned: [UnsafeMutableRawPointer] = [UnsafeMutableRawPointer(bits), UnsafeMutableRawPointer(rank), UnsafeMutableRawPointer(chunk)]
        func buffer<T>(_ a: [T]) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(a.count, 1))
            a.withUnsafeBufferPointer { if let b = $0.baseAddress { p.initialize(from: b, count: a.count) } }
            owned.append(UnsafeMutableRawPointer(p))
            return p
        }
        // Base pointers of the columns: the arrays are held (and never changed) here, so their
        // buffers stay put. (An empty table has no buffers: the bit set stands in, never read.)
        func base<T>(_ a: [T]) -> UnsafePointer<T> {
            a.isEmpty ? UnsafeRawPointer(bits).assumingMemoryBound(to: T.self) : a.withUnsafeBufferPointer { $0.baseAddress! }
        }
        raw = Raw(address: address.reader, size: size.reader, kind: UnsafeRawPointer(base(kind)).assumingMemoryBound(to: UInt8.self),
                  loss: base(loss), offset: offset, count: blocks, chunks: n, chunk: chunk, isBlock: bits, rankBase: rank,
                  spans: spanBase.count, lowest: spanBase.first ?? 0, extent: (spanLimit.max() ?? 0) &- (spanBase.first ?? 0), spanBase: buffer(spanBase), spanLimit: buffer(spanLimit), spanPage: buffer(spanPage),
                  spanFirst: buffer(spanFirst), spanLast: buffer(spanLast), pageFirst: buffer(pageFirst))
        self.owned = owned
    }

    deinit { for p in owned { p.deallocate() } }

    /// The first element's address of an array held unchanged while it is read (`or` for an empty one: never read).
    private static func base<T, U>(_ a: [T], or other: UnsafeMutablePointer<U>) -> UnsafePointer<T> {
        a.isEmpty ? UnsafeRawPointer(other).assumingMemoryBound(to: T.self) : a.withUnsafeBufferPointer { $0.baseAddress! }
    }
}

/// The outcome of a leak check: a class per block and the totals.
public struct LeakReport: Sendable {
    public var blocks: Blocks
    public var leakClass: [LeakClass]
    public var tallies: [LeakClass: Tally]
    /// Bytes of roots and blocks scanned (reachable blocks from the roots, lost ones in their cliques).
    public var scannedBytes: UInt64
    /// The tallies are counted from the classes (every class present, zero or not).
    public init(blocks: Blocks, leakClass: [LeakClass], scannedBytes: UInt64) {
        self.init(blocks: blocks, leakClass: leakClass, scannedBytes: scannedBytes, splitAt: nil)
    }
    /// `splitAt`: where the second of two halves counted at once starts (for tests); nil: half
    /// way for a million blocks or more on two CPUs, else one pass.
    init(blocks: Blocks, leakClass: [LeakClass], scannedBytes: UInt64, splitAt: Int?) {
        precondition(leakClass.count == blocks.count)
        // (in two halves on two CPUs for a million blocks or more: this reads every block's bounds)
        let raw = blocks.raw, n = blocks.count
        let part = { (range: Range<Int>) -> [(count: Int, bytes: UInt64)] in
            var t = [(count: Int, bytes: UInt64)](repeating: (0, 0), count: 4)
            leakClass.withUnsafeBufferPointer { cls in
                for b in range {
                    let c = Int(cls[b].rawValue)
                    t[c].count += 1
                    t[c].bytes &+= raw.end(b) &- raw.start(b)
                }
            }
            return t
        }
        let mid = splitAt.map { min(max($0, 0), n) } ?? (n >= 1 << 20 && BackgroundWork<Void>.secondCPU ? n / 2 : n)
        var second = mid < n ? BackgroundWork { part(mid..<n) } : nil
        let first = part(0..<mid), rest = second?.wait()
        var tallies: [LeakClass: Tally] = [:]
        for c in LeakClass.allCases {
            let i = Int(c.rawValue)
            tallies[c] = Tally(count: first[i].count + (rest?[i].count ?? 0), bytes: first[i].bytes &+ (rest?[i].bytes ?? 0))
        }
        self.blocks = blocks; self.leakClass = leakClass; self.tallies = tallies; self.scannedBytes = scannedBytes
    }
}

public enum Reachability {
    /// Classify every block exactly as Valgrind memcheck does. Roots are `roots` (ranges of
    /// `memory`) and `registerWords`; blocks are read from `memory` (a block that was not copied
    /// is not scanned). A word equal to a block's start is a start pointer; one inside it, an
    /// interior pointer. One pass with an explicit work stack; memory proportional to the blocks.
    /// `progress`: told the share of the copied bytes scanned so far (0...1), every 64 MiB.
    public static func check(blocks: Blocks, memory: MemoryImage, roots: [RootRange], registerWords: [UInt64],
                             progress: ((Double) -> Void)? = nil) -> LeakReport {
        let n = blocks.count
        let scan = Scanner(blocks: blocks, memory: memory)
        scan.progress = progress
        scan.total = max(1, UInt64(memory.totalBytes))
        defer { scan.release() }
        for w in registerWords { scan.mark(w, definite: true) }
        for r in roots { scan.scan(r.start, r.end, definite: true) }
        scan.drain()
        scan.cliques()

        let order: [LeakClass] = [.definitelyLost, .possiblyLost, .stillReachable, .indirectlyLost]   // by state
        let classes = [LeakClass](unsafeUninitializedCapacity: n) { out, made in
            for b in 0..<n { out.initializeElement(at: b, to: order[Int(scan.state[b])]) }
            made = n
        }
        return LeakReport(blocks: blocks, leakClass: classes, scannedBytes: scan.scanned)
    }
}

/// The marking machinery of `check`, on plain buffers (no closures, no copies in the hot loop).
private final class Scanner {
    let blocks: Blocks
    let raw: BlockStorage.Raw
    let memory: MemoryImage
    /// 0 unreached, 1 possible, 2 reachable, 3 indirect
    let state: UnsafeMutablePointer<UInt8>
    /// The work stack of the marks and of the cliques: a block is pushed at most twice while
    /// marking (unreached to possible to reachable) and once in the cliques (after the marks are
    /// done), so two entries per block never overflow. Allocated, not touched: only the pages
    /// the stack reaches become resident.
    let work: UnsafeMutablePointer<Int32>
    var top = 0
    var scanned: UInt64 = 0
    var progress: ((Double) -> Void)? = nil
    var total: UInt64 = 1
    private var told: UInt64 = 0

    init(blocks: Blocks, memory: MemoryImage) {
        self.blocks = blocks
        self.raw = blocks.raw
        self.memory = memory
        cursor = RegionCursor(memory)
        state = .allocate(capacity: max(blocks.count, 1))
        state.initialize(repeating: 0, count: max(blocks.count, 1))
        work = .allocate(capacity: 2 * blocks.count + 1)
    }
    func release() { state.deallocate(); work.deallocate() }

    @inline(__always) private func push(_ b: Int) { work[top] = Int32(b); top += 1 }

    /// The copied region last read (blocks are scanned in runs that share one).
    private var cursor: RegionCursor
    /// The block the last word marked pointed into.
    private var near = -1

    /// A word from a root or a scanned block: `definite` = it comes from a root or a reachable
    /// block. Unreached -> Possible, Unreached -> Reachable, Possible -> Reachable.
    @inline(__always) func mark(_ w: UInt64, definite: Bool) {
        guard w &- raw.lowest < raw.extent, let b = raw.block(containing: w, after: near) else { return }
        near = b
        if definite && w == raw.start(b) {
            if state[b] != 2 { state[b] = 2; push(b) }
        } else if state[b] == 0 {
            state[b] = 1; push(b)
        }
    }

    /// Every aligned word of [from, to) that was copied. Gaps are skipped to the next copied
    /// region (a root may span far more address space than was copied of it).
    func scan(_ from: UInt64, _ to: UInt64, definite: Bool) {
        guard from <= UInt64.max - 7, to >= 8 else { return }
        var a = (from + 7) & ~7
        count(to > a ? to - a : 0)
        while a <= to - 8 {
            guard cursor.reach(a) else {
                guard let next = memory.regionStart(after: a), next < to, next <= UInt64.max - 7 else { return }
                a = (next + 7) & ~7
                continue
            }
            // (a + 8 <= stop: the region holds the word at a, and a + 8 <= to)
            let last = min(to, cursor.end) - 8
            let base = cursor.base!, rs = cursor.start
            while a <= last {
                mark(base.loadUnaligned(fromByteOffset: Int(a &- rs), as: UInt64.self), definite: definite)
                a += 8
            }
        }
    }

    /// Bytes scanned (roots, reachable blocks, lost blocks in their cliques), told to `progress`
    /// every 64 MiB.
    @inline(__always) func count(_ bytes: UInt64) {
        scanned &+= bytes
        if let p = progress, scanned >= told &+ (64 << 20) { told = scanned; p(min(1, Double(scanned) / Double(total))) }
    }

    func drain() {
        while top > 0 {
            top -= 1
            let b = Int(work[top])
            scan(raw.start(b), raw.end(b), definite: state[b] == 2)
        }
    }

    /// Leaked blocks, in address order: each one not yet reached from another leaked block
    /// leads a clique; every unreached block it reaches (start or interior pointer) is
    /// indirectly lost, including earlier leaders, whose cliques join this one.
    /// An earlier leader is not scanned again: everything it reaches was marked in its own
    /// clique (states never go back to unreached), so only its own class changes.
    func cliques() {
        let lowest = raw.lowest, extent = raw.extent
        for leader in 0..<blocks.count where state[leader] == 0 {
            var b = leader
            var near = leader   // the block the last word pointed into: arrays of pointers run in address order
            while true {
                var a = raw.start(b)
                let to = raw.end(b)
                count(to &- a)
                while a + 8 <= to {
                    guard cursor.reach(a) else { a = (a | 4095) + 1; continue }
                    let stop = min(to, cursor.end), base = cursor.base!, rs = cursor.start
                    while a + 8 <= stop {
                        let w = base.loadUnaligned(fromByteOffset: Int(a &- rs), as: UInt64.self)
                        a += 8
                        guard w &- lowest < extent, let t = raw.block(containing: w, after: near) else { continue }
                        near = t
                        if t != leader, state[t] == 0 { state[t] = 3; if t > leader { push(t) } }
                    }
                }
                guard top > 0 else { break }
                top -= 1
                b = Int(work[top])
            }
        }
    }
}

/// Where a chain of references starts.
public enum RootRef: Sendable, Equatable {
    /// Register `register` (index into `RegisterSet.names`) of thread `thread` (index into the register sets).
    case register(thread: Int, register: Int)
    /// The word at `address` in root range `root`.
    case memory(root: Int, address: UInt64)
}

/// One thread's registers, as words, in the kernel's x86_64 `user_regs_struct` order.
public struct RegisterSet: Sendable {
    public static let names = ["r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
                               "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base",
                               "ds", "es", "fs", "gs"]
    public var tid: Int32
    public var words: [UInt64]
    public init(tid: Int32, words: [UInt64]) { self.tid = tid; self.words = words }
}

/// A chain of references: a root word, then words inside blocks; the last hop's word points
/// into the target.
public struct ReferenceChain: Sendable {
    public var root: RootRef
    /// The value the root holds (a pointer into `hops.first?.block`, or into the target).
    public var rootValue: UInt64
    /// Each hop: a block, and the offset in it of the word that points to the next block (or the target).
    public var hops: [(block: Int, offset: UInt64, value: UInt64)]
}

extension Reachability {
    /// The shortest chain of references (start or interior pointers) from a root to block
    /// `target`: breadth first from every root word at once. Nil when no root reaches it (it is
    /// lost). With `from`, the chain starts at those blocks instead of at roots (for example the
    /// definitely lost block an indirectly lost one hangs off); its root is then `.memory(root: -1, ...)`.
    public static func shortestChain(to target: Int, blocks: Blocks, memory: MemoryImage, roots: [RootRange],
                                     registers: [RegisterSet], from sources: [Int]? = nil) -> ReferenceChain? {
        let n = blocks.count
        guard target >= 0 && target < n else { return nil }
        var parent = [Int32](repeating: -1, count: n)      // -1 unvisited, -2 seeded by a root
        var parentOffset = [UInt32](repeating: 0, count: n)
        var seed: [Int: (RootRef, UInt64)] = [:]
        var queue: [Int32] = []
        func visitRoot(_ w: UInt64, _ ref: RootRef) {
            guard let b = blocks.block(containing: w), parent[b] == -1 else { return }
            parent[b] = -2; seed[b] = (ref, w); queue.append(Int32(b))
        }
        if let sources {
            for b in sources where parent[b] == -1 { parent[b] = -2; seed[b] = (.memory(root: -1, address: blocks.start[b]), blocks.start[b]); queue.append(Int32(b)) }
        } else {
            for (t, set) in registers.enumerated() { for (i, w) in set.words.enumerated() { visitRoot(w, .register(thread: t, register: i)) } }
            for (k, r) in roots.enumerated() {
                guard r.start <= UInt64.max - 7, r.end >= 8 else { continue }
                var a = (r.start + 7) & ~7
                while a <= r.end - 8 {
                    if let w = memory.word(a) { visitRoot(w, .memory(root: k, address: a)); a += 8; continue }
                    // (skip to the next copied region: a root may span more than was copied)
                    guard let next = memory.regionStart(after: a), next <= UInt64.max - 7 else { break }
                    a = max(a + 8, (next + 7) & ~7)
                }
            }
        }
        var head = 0
        while head < queue.count && parent[target] == -1 {
            let b = Int(queue[head]); head += 1
            var a = blocks.start[b]
            while a + 8 <= blocks.end[b] {
                if let w = memory.word(a), let t = blocks.block(containing: w), parent[t] == -1 {
                    parent[t] = Int32(b); parentOffset[t] = UInt32(a - blocks.start[b]); queue.append(Int32(t))
                }
                a += 8
            }
        }
        guard parent[target] != -1 else { return nil }
        var hops: [(block: Int, offset: UInt64, value: UInt64)] = []
        var b = target
        while parent[b] >= 0 {
            let p = Int(parent[b]), off = UInt64(parentOffset[b])
            hops.append((p, off, memory.word(blocks.start[p] + off) ?? 0))
            b = p
        }
        let (ref, value) = seed[b]!
        return ReferenceChain(root: ref, rootValue: value, hops: hops.reversed())
    }
}
