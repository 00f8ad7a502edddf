import Analysis
import HeapModel
import Snapshot

/// Two snapshots compared: groups of outstanding chunks (by type, size, owner or state) in A and
/// B, chunks new in B, gone since A and surviving, and growth explained by cause.
public struct SnapshotDiff: Sendable {
    public enum Key: String, Sendable, CaseIterable { case type, size, owner, state }
    public struct Group: Sendable { public var key: String; public var a = Tally(); public var b = Tally() }
    /// One cause of growth: `a` and `b` in `unit` ("bytes", "threads", "arenas").
    public struct Cause: Sendable { public var id: String; public var name: String; public var unit: String; public var a: Int64; public var b: Int64 }

    public private(set) var groups: [Group] = []
    public private(set) var new = Tally(), gone = Tally(), survivors = Tally()
    /// Survivors whose bytes differ (nil: not both snapshots hold contents).
    public private(set) var changed: Int?
    public private(set) var causes: [Cause] = []
    public let by: Key
    /// The two snapshots' labels (for a pprof export of the same diff).
    public let typesA: TypeInspection, typesB: TypeInspection

    public init(_ sa: Snapshot, _ sb: Snapshot, by: Key) {
        self.by = by
        let ta = TypeInspection(snapshot: sa), tb = TypeInspection(snapshot: sb)
        typesA = ta; typesB = tb
        let ga = ta.groups(), gb = tb.groups()
        var index: [String: Int] = [:]
        // Per block an integer key (no string per block): its group, owner or state — small
        // dense numbers, looked up in an array — or its size (a dictionary); the name of each
        // distinct key is made once.
        func add(_ t: TypeInspection, _ s: Snapshot, _ g: TypeInspection.Groups, _ isA: Bool) {
            let keys: Int? = switch by {
            case .type: g.label.count + 1
            case .owner: s.owners.count + 1
            case .state: 257
            case .size: nil
            }
            var dense = [Int](repeating: -1, count: keys ?? 0), bySize: [UInt64: Int] = [:]
            var tallies: [Tally] = []
            let chunk = t.blocks.chunk, start = t.blocks.start, end = t.blocks.end
            for k in 0..<t.blocks.count {
                let i = Int(chunk[k]), bytes = end[k] - start[k]
                let key: Int = switch by {   // -1 (unknown type, no owner) .. keys - 2
                case .type: Int(g.of[k])
                case .owner: Int(s.owner[i])
                case .state: Int(s.report.chunks.kind[i].rawValue)
                case .size: 0
                }
                var at = keys == nil ? bySize[bytes] ?? -1 : dense[key + 1]
                if at < 0 {
                    let name: String = switch by {
                    case .size: String(bytes)
                    case .owner: key >= 0 ? s.owners[key] : "(no owner)"
                    case .state: s.report.chunks.kindName(i)
                    case .type: g.key(Int32(key))
                    }
                    at = index[name] ?? { groups.append(Group(key: name)); index[name] = groups.count - 1; return groups.count - 1 }()
                    if keys == nil { bySize[bytes] = at } else { dense[key + 1] = at }
                }
                if at >= tallies.count { tallies += [Tally](repeating: Tally(), count: at + 1 - tallies.count) }
                tallies[at].add(bytes)
            }
            for (at, x) in tallies.enumerated() where x.count > 0 { if isA { groups[at].a = x } else { groups[at].b = x } }
        }
        add(ta, sa, ga, true); add(tb, sb, gb, false)
        groups.sort {
            let x = Int64(bitPattern: $0.b.bytes &- $0.a.bytes), y = Int64(bitPattern: $1.b.bytes &- $1.a.bytes)
            return x != y ? x > y : $0.key < $1.key
        }
        // Chunk identity: same user address, size, allocator kind and type group — the group by
        // its identity (label, confidence, via union), never by its display name: "char[]"
        // declared and "char[]" by heuristic are two groups that print alike. Same bytes when
        // both hold contents. A's groups as B's ids, once.
        func identity(_ g: TypeInspection.Groups, _ x: Int) -> String { "\(g.label[x])\u{0}\(g.confidence[x].rawValue)\u{0}\(g.ambiguous[x])" }
        var idOfIdentity: [String: Int32] = [:]
        for x in 0..<gb.label.count { idOfIdentity[identity(gb, x)] = Int32(x) }
        let aInB = (0..<ga.label.count).map { idOfIdentity[identity(ga, $0)] ?? -2 }
        let kindA = sa.report.chunks.kind, kindB = sb.report.chunks.kind
        func offsets(_ t: TypeInspection) -> [UInt64] {
            var o: [UInt64] = [], sum: UInt64 = 0
            o.reserveCapacity(t.blocks.count)
            for k in 0..<t.blocks.count { o.append(sum); sum += t.blocks.userEnd(k) - t.blocks.userStart(k) }
            return o
        }
        let oa = offsets(ta), ob = offsets(tb)
        var ka = 0, differing = 0
        var matchedA = [Bool](repeating: false, count: ta.blocks.count)
        for k in 0..<tb.blocks.count {
            let start = tb.blocks.userStart(k), size = tb.blocks.userEnd(k) - start
            while ka < ta.blocks.count && ta.blocks.userStart(ka) < start { ka += 1 }
            if ka < ta.blocks.count, ta.blocks.userStart(ka) == start, ta.blocks.userEnd(ka) - ta.blocks.userStart(ka) == size,
               kindA[Int(ta.blocks.chunk[ka])] == kindB[Int(tb.blocks.chunk[k])],
               (ga.of[ka] < 0 ? -1 : aInB[Int(ga.of[ka])]) == gb.of[k] {
                matchedA[ka] = true
                survivors.add(size)
                if let ca = sa.contents, let cb = sb.contents,
                   ca[Int(oa[ka])..<Int(oa[ka] + size)] != cb[Int(ob[k])..<Int(ob[k] + size)] { differing += 1 }
            } else { new.add(size) }
        }
        for k in 0..<ta.blocks.count where !matchedA[k] { gone.add(ta.blocks.userEnd(k) - ta.blocks.userStart(k)) }
        changed = sa.contents != nil && sb.contents != nil ? differing : nil
        let xa = SnapshotDiff.causes(sa), xb = SnapshotDiff.causes(sb)
        causes = zip(xa, xb).map { Cause(id: $0.0.id, name: $0.0.name, unit: $0.0.unit, a: $0.0.value, b: $0.1.value) }
    }

    /// The seeds' four case studies in one table: in-use growth (reachable, lost), memory malloc
    /// keeps free (bins and caches, top; what malloc_trim would return), mmapped chunks, arenas,
    /// and threads that exited without being joined (their stacks stay mapped until pthread_join).
    static func causes(_ s: Snapshot) -> [(id: String, name: String, unit: String, value: Int64)] {
        let c = s.report.chunks, heap = s.report.heap
        var reach: Int64 = 0, possible: Int64 = 0, lost: Int64 = 0, free: Int64 = 0, top: Int64 = 0, mm: Int64 = 0, blocks: Int64 = 0
        // In-use bytes by leak class: reachable, possibly lost (only interior pointers reach
        // it: a page cache or a string table often is), definitely or indirectly lost.
        func add(_ i: Int, _ sz: Int64) {
            switch s.leakClass[i] {
            case LeakClass.stillReachable.rawValue: reach += sz
            case LeakClass.possiblyLost.rawValue: possible += sz
            default: lost += sz
            }
        }
        let own = Set(c.kinds.ownMappingKinds)
        for i in 0..<c.count {
            let sz = Int64(c.size[i])
            switch c.state(i) {
            case .inUse where own.contains(c.kind[i]): mm += sz
            case .inUse: add(i, sz)
            case .top: top += sz
            case .metadata: break
            case .cachedFree, .allocatorFree: free += sz
            }
        }
        // The heap blocks of unjoined threads count with their threads, not as in use.
        for t in heap.exitedThreads ?? [] where t.heapBlock != 0 {
            guard let i = c.index(containing: t.heapBlock), c.state(i) == .inUse, !own.contains(c.kind[i]) else { continue }
            let sz = Int64(c.size[i])
            blocks += sz
            add(i, -sz)
        }
        let unjoined = heap.exitedTally(.unjoined), cached = heap.exitedTally(.cached)
        let known = heap.exitedThreads != nil
        var rows: [(String, String, String, Int64)] = [
            ("in_use_reachable", "in use, reachable", "bytes", reach),
            ("in_use_possibly_lost", "in use, possibly lost", "bytes", possible),
            ("in_use_lost", "in use, definitely or indirectly lost", "bytes", lost),
            ("free_bins", "free in caches and free lists", "bytes", free),
            ("free_top", "free at the top of arenas", "bytes", top),
            ("trimmable", "of the free: malloc_trim(0) would return", "bytes", Int64(clamping: heap.trimmableBytes)),
            ("mmapped", "mmapped chunks", "bytes", mm),
            ("arenas", "arenas", "arenas", Int64(heap.arenas.count)),
            ("arena_system", "arena memory from the system", "bytes", Int64(clamping: heap.arenas.reduce(UInt64(0)) { $0 &+ $1.systemBytes })),
            ("threads", "threads running", "threads", Int64(heap.threads.count)),
        ]
        // Resident memory by holder, when the snapshot accounted for it (the named anonymous
        // lines summed into one: names differ between snapshots).
        if let m = s.report.memory {
            rows.append(("rss", "resident memory (RSS)", "bytes", Int64(clamping: m.rss)))
            var byID: [(String, Int64)] = []
            for l in m.lines {
                if let i = byID.firstIndex(where: { $0.0 == l.id }) { byID[i].1 += l.rss } else { byID.append((l.id, l.rss)) }
            }
            let short = ["malloc_in_use": "in use", "malloc_free": "free chunks", "malloc_top": "top", "malloc_metadata": "malloc's own",
                         "malloc_heap": "heaps", "mmapped_chunks": "mmapped chunks", "thread_stacks": "thread stacks",
                         "anonymous": "other anonymous", "shared": "shared", "file_backed": "file-backed", "unexplained": "unexplained"]
            for (id, v) in byID { rows.append(("rss_" + id, "  of it: " + (short[id] ?? id), "bytes", v)) }
        }
        if known {
            // (clamping: sums of what a snapshot file says need not fit)
            rows += [("unjoined_threads", "threads exited, not joined", "threads", Int64(unjoined.count)),
                     ("unjoined_stacks", "their stacks and descriptors", "bytes", Int64(clamping: unjoined.bytes)),
                     ("unjoined_heap", "their blocks in the heap (freed at join)", "bytes", blocks),
                     ("cached_stacks", "stacks glibc caches after join", "bytes", Int64(clamping: cached.bytes))]
        }
        return rows.map { (id: $0.0, name: $0.1, unit: $0.2, value: $0.3) }
    }
}
