@testable import Analysis
import HeapModel
import ProcessAccess
import Testing

/// The reachability core on heaps built by hand, where every block's class follows from
/// Valgrind memcheck's rules (mc_leakcheck.c, heuristics off) by construction.
@Suite("Reachability (Valgrind's leak classes)", .timeLimit(.minutes(2)))
struct ReachabilityTests {
    /// A heap of 64-byte blocks at `heapBase` and one root range at `rootBase`.
    struct Heap {
        static let heapBase: UInt64 = 0x5555_0000_0000, rootBase: UInt64 = 0x7fff_0000_0000
        static let blockSize: UInt64 = 64
        let heap: Region, root: Region
        var rootWords = 0
        init(blocks: Int) {
            heap = Region(start: Heap.heapBase, count: blocks * Int(Heap.blockSize), label: "heap")!
            heap.base.initializeMemory(as: UInt8.self, repeating: 0, count: heap.count)
            root = Region(start: Heap.rootBase, count: 4096, label: "root")!
            root.base.initializeMemory(as: UInt8.self, repeating: 0, count: root.count)
        }
        func at(_ k: Int) -> UInt64 { Heap.heapBase + UInt64(k) * Heap.blockSize }
        /// Block `from`'s word `slot` holds `value`.
        func store(_ from: Int, slot: Int, _ value: UInt64) {
            heap.base.storeBytes(of: value, toByteOffset: from * Int(Heap.blockSize) + slot * 8, as: UInt64.self)
        }
        mutating func root(_ value: UInt64) {
            root.base.storeBytes(of: value, toByteOffset: rootWords * 8, as: UInt64.self)
            rootWords += 1
        }
        func check(_ blocks: Int, registers: [UInt64] = []) -> LeakReport {
            let image = MemoryImage()
            image.add(heap); image.add(root)
            let b = Blocks(start: (0..<blocks).map(at), size: Array(repeating: Heap.blockSize, count: blocks))
            return Reachability.check(blocks: b, memory: image,
                                      roots: [RootRange(start: Heap.rootBase, end: Heap.rootBase + 4096, kind: .moduleData, label: "root")],
                                      registerWords: registers)
        }
    }

    @Test("every class: start and interior pointers, chains, cycles, heads above their lists, disguised pointers, registers, upgrades")
    func classes() {
        var h = Heap(blocks: 21)
        // 0 reachable from a root; 1 from 0 (start pointer)
        h.root(h.at(0)); h.store(0, slot: 3, h.at(1))
        // 2: only an interior pointer from reachable 1 -> possibly lost; 3 from possible 2 -> possibly lost
        h.store(1, slot: 0, h.at(2) + 8); h.store(2, slot: 7, h.at(3))
        // 4: interior pointer from a root -> possibly lost
        h.root(h.at(4) + 16)
        // 5: only in a register -> reachable
        // 6 -> 7 -> 8, nothing points to 6: 6 definitely, 7 and 8 indirectly lost
        h.store(6, slot: 1, h.at(7)); h.store(7, slot: 1, h.at(8))
        // 9 <-> 10, a leaked cycle: the first of it definitely, the other indirectly lost
        h.store(9, slot: 0, h.at(10)); h.store(10, slot: 0, h.at(9))
        // 13 -> 11 -> 12: the head above its list is still the one definitely lost
        h.store(13, slot: 2, h.at(11)); h.store(11, slot: 2, h.at(12))
        // 14: its address stored xor'ed -> definitely lost
        h.root(h.at(14) ^ 0x5a5a_5a5a_5a5a_5a5a)
        // 15 points only to itself -> definitely lost
        h.store(15, slot: 0, h.at(15))
        // 16 -> interior of 17, nothing points to 16: interior pointers count inside leaks
        h.store(16, slot: 5, h.at(17) + 40)
        // 18: first an interior pointer, then a start pointer from roots -> reachable, and 19,
        // which 18 points to, must be upgraded with it; 20: nothing points to it -> definitely lost
        h.root(h.at(18) + 24); h.root(h.at(18)); h.store(18, slot: 4, h.at(19))
        let r = h.check(21, registers: [0x1234, h.at(5)])
        let want: [LeakClass] = [
            .stillReachable, .stillReachable, .possiblyLost, .possiblyLost, .possiblyLost, .stillReachable,
            .definitelyLost, .indirectlyLost, .indirectlyLost, .definitelyLost, .indirectlyLost,
            .indirectlyLost, .indirectlyLost, .definitelyLost, .definitelyLost, .definitelyLost,
            .definitelyLost, .indirectlyLost, .stillReachable, .stillReachable, .definitelyLost,
        ]
        for (k, c) in want.enumerated() { #expect(r.leakClass[k] == c, "block \(k): \(r.leakClass[k]) instead of \(c)") }
        for c in LeakClass.allCases {
            let n = want.filter { $0 == c }.count
            #expect(r.tallies[c] == Tally(count: n, bytes: UInt64(n) * Heap.blockSize), "\(c.name)")
        }
    }

    @Test("a possibly lost block's pointers make what they reach possibly lost, never reachable")
    func possibleDoesNotUpgrade() {
        var h = Heap(blocks: 3)
        h.root(h.at(0) + 8)                 // 0 possible
        h.store(0, slot: 0, h.at(1))        // start pointer from a possible block: 1 possible
        h.store(1, slot: 0, h.at(2))
        let r = h.check(3)
        #expect(r.leakClass == [.possiblyLost, .possiblyLost, .possiblyLost])
    }

    @Test("random graphs: every class as Valgrind's rules give it, computed naively (marks to a fixed point, earlier leaders followed again)")
    func randomGraphs() {
        var rng = SystemRandomNumberGenerator()
        for round in 0..<200 {
            let n = Int.random(in: 1...60, using: &rng)
            var h = Heap(blocks: n)
            // out[b]: the (target, start pointer?) of each word of block b that points into a block
            var out = [[(Int, Bool)]](repeating: [], count: n), rootRefs: [(Int, Bool)] = []
            let density = Double.random(in: 0...0.3, using: &rng)   // sparse and dense graphs
            for b in 0..<n {
                for slot in 0..<8 where Double.random(in: 0..<1, using: &rng) < density {
                    let t = Int.random(in: 0..<n, using: &rng), interior = Bool.random(using: &rng)
                    h.store(b, slot: slot, h.at(t) + (interior ? UInt64.random(in: 1..<Heap.blockSize, using: &rng) : 0))
                    out[b].append((t, !interior))
                }
            }
            for _ in 0..<Int.random(in: 0...3, using: &rng) {
                let t = Int.random(in: 0..<n, using: &rng), interior = Bool.random(using: &rng)
                h.root(h.at(t) + (interior ? 8 : 0)); rootRefs.append((t, !interior))
            }
            // Marks: reachable by start pointers from roots and reachable blocks; possible by any
            // other pointer from roots, reachable or possible blocks (to a fixed point).
            var state = [Int](repeating: 0, count: n)   // 0 unreached, 1 possible, 2 reachable, 3 indirect
            var changed = true
            func reach(_ t: Int, _ start: Bool, definite: Bool) {
                if definite && start { if state[t] != 2 { state[t] = 2; changed = true } } else if state[t] == 0 { state[t] = 1; changed = true }
            }
            for (t, start) in rootRefs { reach(t, start, definite: true) }
            while changed {
                changed = false
                for b in 0..<n where state[b] == 1 || state[b] == 2 { for (t, start) in out[b] { reach(t, start, definite: state[b] == 2) } }
            }
            // Cliques as memcheck forms them, in address order: each unreached block other than
            // the leader that a clique reaches joins it and is followed (earlier leaders too, again).
            for leader in 0..<n where state[leader] == 0 {
                var work = [leader]
                while let b = work.popLast() {
                    for (t, _) in out[b] where t != leader && state[t] == 0 { state[t] = 3; work.append(t) }
                }
            }
            let order: [LeakClass] = [.definitelyLost, .possiblyLost, .stillReachable, .indirectlyLost]
            let r = h.check(n)
            for b in 0..<n { #expect(r.leakClass[b] == order[state[b]], "round \(round), block \(b) of \(n): \(r.leakClass[b]) instead of \(order[state[b]])") }
        }
    }

    @Test("the tallies per class, counted in one pass or in two halves split anywhere, are the sums over the blocks")
    func talliesInHalves() {
        var rng = SystemRandomNumberGenerator()
        let n = 3000
        var starts: [UInt64] = [], sizes: [UInt64] = []
        var a: UInt64 = 0x5555_0000_0000
        for _ in 0..<n { let z = UInt64.random(in: 1...500, using: &rng); starts.append(a); sizes.append(z); a += z + 16 }
        let b = Blocks(start: starts, size: sizes)
        let cls = (0..<n).map { _ in LeakClass.allCases.randomElement(using: &rng)! }
        var want: [LeakClass: Tally] = [:]
        for c in LeakClass.allCases {
            let mine = (0..<n).filter { cls[$0] == c }
            want[c] = Tally(count: mine.count, bytes: mine.reduce(0) { $0 + sizes[$1] })
        }
        for split in [nil, 0, 1, n / 2, Int.random(in: 0..<n, using: &rng), n - 1, n] as [Int?] {
            let r = LeakReport(blocks: b, leakClass: cls, scannedBytes: 0, splitAt: split)
            #expect(r.tallies == want, "split at \(split.map(String.init) ?? "none")")
        }
    }

    @Test("the block index finds the block holding any address, across spans far apart")
    func blockIndex() {
        var rng = SystemRandomNumberGenerator()
        var starts: [UInt64] = [], sizes: [UInt64] = []
        var a: UInt64 = 0x5555_5555_0000
        for i in 0..<5000 {
            if i % 1000 == 999 { a += UInt64.random(in: (64 << 20)...(1 << 40), using: &rng) }   // a new span
            a += UInt64.random(in: 0...3, using: &rng) * 16
            let n = UInt64.random(in: 1...(i % 50 == 0 ? 40_000 : 300), using: &rng)
            starts.append(a); sizes.append(n)
            a += n
        }
        let b = Blocks(start: starts, size: sizes)
        func brute(_ x: UInt64) -> Int? {
            var lo = 0, hi = starts.count
            while lo < hi { let m = (lo + hi) / 2; if starts[m] + sizes[m] <= x { lo = m + 1 } else { hi = m } }
            return lo < starts.count && starts[lo] <= x ? lo : nil
        }
        var probes: [UInt64] = [0, .max, starts[0] - 1, starts.last! + sizes.last!]
        for k in stride(from: 0, to: starts.count, by: 7) { probes += [starts[k], starts[k] + sizes[k] - 1, starts[k] + sizes[k], starts[k] &- 1] }
        for _ in 0..<20_000 { probes.append(UInt64.random(in: starts[0]...(starts.last! + sizes.last!), using: &rng)) }
        for x in probes { #expect(b.block(containing: x) == brute(x), "0x\(String(x, radix: 16))") }
    }
}

/// The block index over a chunk table as a walker makes it: chunks in use between free ones and
/// malloc's own, user addresses 16 bytes into a chunk and usable sizes 8 bytes short of it (so a
/// block's end reaches into the next chunk's header), chunks mapped on their own, spans far apart.
@Suite("Blocks of a chunk table", .timeLimit(.minutes(2)))
struct BlockTableTests {
    @Test("block(containing:), block(ofChunk:), start and end agree with a search over the outstanding chunks, the blocks found in one piece or two")
    func againstBruteForce() {
        let kinds = AllocatorKinds(allocator: "test", kinds: [
            .init(name: "in_use", state: .inUse, usableLoss: 8),
            .init(name: "free", state: .allocatorFree, usableLoss: 0),
            .init(name: "internal", state: .metadata, usableLoss: 0),
            .init(name: "mmapped", state: .inUse, usableLoss: 16, ownMapping: true),
        ], userOffset: 16)
        var rng = SystemRandomNumberGenerator()
        var address: [UInt64] = [], size: [UInt64] = [], kind: [ChunkKind] = []
        var a: UInt64 = 0x5555_5555_0000
        for i in 0..<20_000 {
            if i % 4000 == 3999 { a += UInt64.random(in: (64 << 20)...(1 << 40), using: &rng) }   // a new span
            let k = i % 97 == 0 ? 3 : [0, 0, 0, 1, 2][Int.random(in: 0..<5, using: &rng)]
            let n = k == 3 ? UInt64.random(in: 1...600, using: &rng) * 4096 : UInt64.random(in: 2...40, using: &rng) * 16
            address.append(a); size.append(n); kind.append(ChunkKind(UInt8(k)))
            a += n + (k == 3 ? 4096 * UInt64.random(in: 0...2, using: &rng) : 0)
        }
        let table = ChunkTable(address: address, size: size, kind: kind, arena: [UInt16](repeating: 0, count: address.count), kinds: kinds)
        // The outstanding chunks, in order, with their user ranges.
        let outstanding = (0..<table.count).filter { table.isOutstanding($0) && table.usableSize($0) > 0 }
        let isBlock = Set(outstanding)
        func brute(_ x: UInt64) -> Int? {
            var lo = 0, hi = outstanding.count
            while lo < hi { let m = (lo + hi) / 2; if table.userAddress(outstanding[m]) + table.usableSize(outstanding[m]) <= x { lo = m + 1 } else { hi = m } }
            return lo < outstanding.count && table.userAddress(outstanding[lo]) <= x ? lo : nil
        }
        var probes: [UInt64] = [0, .max, address[0], address.last! + size.last! + 8]
        for i in stride(from: 0, to: table.count, by: 3) {
            let u = table.userAddress(i)
            probes += [address[i], address[i] + 8, u - 1, u, u + table.usableSize(i) - 1, u + table.usableSize(i), address[i] + size[i] + 7]
        }
        for _ in 0..<30_000 { probes.append(UInt64.random(in: address[0]...(address.last! + size.last!), using: &rng)) }
        let wanted = probes.map(brute)
        var found = 0
        // Found in one piece and in two, split anywhere (rounded to 64 chunks): the same blocks.
        let splits: [Int?] = [nil, 0, 1, 64, 127, 128, Int.random(in: 0..<table.count, using: &rng), table.count - 1, table.count]
        for split in splits {
            let b = Blocks(table, split: split)
            let where_ = split.map { "split at \($0)" } ?? "one piece"
            #expect(b.count == outstanding.count, "\(where_)")
            for (k, i) in outstanding.enumerated() {
                #expect(Int(b.chunk[k]) == i && b.block(ofChunk: i) == k, "\(where_)")
                #expect(b.start[k] == table.userAddress(i) && b.end[k] == table.userAddress(i) + table.usableSize(i), "\(where_)")
            }
            for i in 0..<table.count where !isBlock.contains(i) { #expect(b.block(ofChunk: i) == nil, "\(where_)") }
            for (x, want) in zip(probes, wanted) {
                #expect(b.block(containing: x) == want, "0x\(String(x, radix: 16)), \(where_)")
                if want != nil && split == nil { found += 1 }
            }
        }
        #expect(found > 10_000, "the probes hit blocks")
    }
}

/// The chunk table's compact columns (sizes derived from the next chunk's address where a chunk
/// ends there, arenas as runs) and the labels' element counts, against the plain arrays they stand for.
@Suite("Compact columns", .timeLimit(.minutes(2)))
struct ColumnTests {
    @Test("addresses, sizes and arenas read back as given: chunks that end where the next begins, gaps, overlaps, huge sizes, groups spanning 4 GiB, runs of arenas")
    func tableColumns() {
        var rng = SystemRandomNumberGenerator()
        for round in 0..<20 {
            let n = round == 0 ? 1 : Int.random(in: 2...5000, using: &rng)
            var address: [UInt64] = [], size: [UInt64] = [], arena: [UInt16] = []
            var a: UInt64 = UInt64.random(in: 0...(1 << 47), using: &rng) & ~15
            var ar: UInt16 = 0
            for _ in 0..<n {
                var s = UInt64.random(in: 2...64, using: &rng) * 16
                switch Int.random(in: 0..<50, using: &rng) {
                case 0: s = UInt64.random(in: (1 << 32)...(1 << 40), using: &rng)   // bigger than 32 bits
                case 1: ar = ChunkTable.noArena
                case 2: ar = UInt16.random(in: 0..<8, using: &rng)
                default: break
                }
                address.append(a); size.append(s); arena.append(ar)
                switch Int.random(in: 0..<40, using: &rng) {
                case 0: a &+= s + UInt64.random(in: 1...(1 << 30), using: &rng)   // a gap
                case 2: a &+= s + UInt64.random(in: (1 << 32)...(1 << 36), using: &rng)   // a group of 64 spanning 4 GiB
                case 1: a &+= s / 2                                                 // overlapping (corrupt): stored
                default: a &+= s
                }
            }
            let t = ChunkTable(address: address, size: size, kind: [ChunkKind](repeating: ChunkKind(0), count: n), arena: arena, kinds: .none)
            #expect(t.count == n)
            #expect(Array(t.address) == address, "round \(round)")
            let ad = t.address.reader
            #expect((0..<n).allSatisfy { ad.address($0) == address[$0] })
            #expect((0..<n).allSatisfy { t.index(ofChunkAt: address[$0]) == $0 })
            #expect(Array(t.size) == size, "round \(round)")
            #expect(Array(t.arena) == arena, "round \(round)")
            let reader = t.size.reader
            #expect((0..<n).allSatisfy { reader.size($0) == size[$0] })
            // The runs cover every chunk once, in order, each of one arena.
            var next = 0
            for run in t.arena.runs {
                #expect(run.range.lowerBound == next && !run.range.isEmpty)
                #expect(run.range.allSatisfy { arena[$0] == run.arena })
                next = run.range.upperBound
            }
            #expect(next == n)
        }
        let empty = ChunkTable(address: [], size: [UInt64](), kind: [], arena: [UInt16](), kinds: .none)
        #expect(empty.count == 0 && empty.size.isEmpty && empty.arena.runs.isEmpty)
    }

    @Test("element counts: a byte each, counts of 255 and more kept aside, overwritten both ways")
    func counts() {
        var rng = SystemRandomNumberGenerator()
        var plain: [UInt32] = [], c = CountColumn()
        for _ in 0..<10_000 {
            let v: UInt32 = Int.random(in: 0..<10, using: &rng) == 0 ? UInt32.random(in: 250...UInt32.max, using: &rng) : UInt32.random(in: 0...3, using: &rng)
            plain.append(v); c.append(v)
        }
        for _ in 0..<20_000 {
            let i = Int.random(in: 0..<plain.count, using: &rng)
            let v: UInt32 = Bool.random(using: &rng) ? UInt32.random(in: 254...300, using: &rng) : UInt32.random(in: 0...2, using: &rng)
            plain[i] = v; c[i] = v
        }
        #expect(Array(c) == plain)
        #expect((0..<plain.count).allSatisfy { c.isArray($0) == (plain[$0] > 1) })
        #expect(Array(CountColumn(repeating: 1000, count: 5)) == [UInt32](repeating: 1000, count: 5))
        #expect(Array(CountColumn(repeating: 1, count: 5)) == [UInt32](repeating: 1, count: 5))
    }
}
