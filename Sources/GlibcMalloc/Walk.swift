import Glibc
import HeapModel
import ProcessAccess

/// A free chunk as found in one of malloc's lists.
struct ListedFree {
    var address: UInt64
    var kind: ChunkKind
}

/// What the segment walk counts as it appends chunks: per (arena, kind) chunks and bytes, and the
/// bytes malloc_trim would give back (no second pass over the table for them).
struct SegmentTally {
    let kinds: Int
    var counts: [Int], sums: [UInt64]
    var trimmable: UInt64 = 0
    init(arenas: Int, kinds: Int) {
        self.kinds = kinds
        counts = [Int](repeating: 0, count: arenas * kinds); sums = [UInt64](repeating: 0, count: arenas * kinds)
    }
    @inline(__always) mutating func add(_ arena: Int, _ k: ChunkKind, _ address: UInt64, _ size: UInt64) {
        let i = arena * kinds + Int(k.rawValue)
        counts[i] += 1
        sums[i] &+= size
        trimmable &+= GlibcKinds.trimmable(k, address, size)
    }
}

/// Brent's cycle detection for singly linked lists: O(1) memory, finds any loop within a few
/// times its length. `step` returns true when `x` was seen before.
struct CycleGuard {
    private var power = 1, lambda = 0
    private var tortoise: UInt64 = .max
    private(set) var hops = 0
    mutating func step(_ x: UInt64) -> Bool {
        if x == tortoise { return true }
        hops += 1
        lambda += 1
        if lambda == power { tortoise = x; power <<= 1; lambda = 0 }
        return false
    }
}

extension Array where Element == ListedFree {
    /// After a cycle was found, drop the repeats the list walk appended from `start` on.
    mutating func dropRepeats(from start: Int) {
        var seen: Set<UInt64> = []
        var out: [ListedFree] = []
        for e in self[start...] where seen.insert(e.address).inserted { out.append(e) }
        removeSubrange(start...)
        append(contentsOf: out)
    }
}

/// Bounded list walks: every list stops at a cycle, an unreadable or misaligned link, or this many hops.
let maxListHops = 50_000_000

extension GlibcCapture {
    public func walk() -> HeapWalk {
        let L = target.layout
        let tt = PhaseTrace()   // (HEAPSCOPE_TRACE=1)
        var warnings = self.warnings
        if let w = crossCheckSignature() { warnings.append(w) }
        var listed: [ListedFree] = []
        var fastCount = [Int](repeating: 0, count: arenas.count), fastBytes = [UInt64](repeating: 0, count: arenas.count)
        var binCount = [Int](repeating: 0, count: arenas.count), binBytes = [UInt64](repeating: 0, count: arenas.count)

        // 1. Fastbins and regular bins of every arena.
        var cur = RegionCursor(image)
        for (ai, ar) in arenas.enumerated() {
            for i in 0..<L.nFastbins {
                var c = image.word(ar + L.arenaFastbins + UInt64(8 * i)) ?? 0
                var guardC = CycleGuard()
                let first = listed.count
                var previous: UInt64 = 0
                while c != 0 {
                    cur.prefetchAhead(from: previous, to: c)
                    previous = c
                    guard c & L.alignMask == 0, let sizeField = cur.word(c + 8) else {
                        warnings.append(.init(.corruptList, c, "fastbin \(i) of arena \(ai): link to 0x\(hex(c)) is misaligned or unreadable")); break
                    }
                    if guardC.step(c) || guardC.hops > maxListHops {
                        warnings.append(.init(.listCycle, c, "fastbin \(i) of arena \(ai) loops at chunk 0x\(hex(c))"))
                        listed.dropRepeats(from: first); break
                    }
                    let sz = sizeField & ~7
                    if sz != 0x20 + 16 * UInt64(i) {
                        warnings.append(.init(.corruptChunk, c, "fastbin \(i) of arena \(ai): chunk 0x\(hex(c)) has size 0x\(hex(sz)), expected 0x\(hex(0x20 + 16 * UInt64(i)))"))
                    }
                    listed.append(ListedFree(address: c, kind: .fastbin))
                    fastCount[ai] += 1; fastBytes[ai] &+= sz
                    c = L.reveal(c + 16, cur.word(c + 16) ?? 0)
                }
            }
            for i in 1..<L.nBins {
                let b = L.binAt(ar, i)
                var p = image.word(b + 16) ?? b
                var prev = b
                var guardC = CycleGuard()
                let first = listed.count
                let kind: ChunkKind = i == 1 ? .unsorted : (L.binKindIsSmall(i) ? .small : .large)
                while p != b {
                    cur.prefetchAhead(from: prev, to: p)
                    guard p & L.alignMask == 0, let sizeField = cur.word(p + 8), let next = cur.word(p + 16) else {
                        warnings.append(.init(.corruptList, p, "bin \(i) of arena \(ai): link to 0x\(hex(p)) is misaligned or unreadable")); break
                    }
                    if guardC.step(p) || guardC.hops > maxListHops {
                        warnings.append(.init(.listCycle, p, "bin \(i) of arena \(ai) loops at chunk 0x\(hex(p))"))
                        listed.dropRepeats(from: first); break
                    }
                    if cur.word(p + 24) != prev {
                        warnings.append(.init(.corruptList, p, "bin \(i) of arena \(ai): chunk 0x\(hex(p)) bk does not point back to 0x\(hex(prev))"))
                    }
                    listed.append(ListedFree(address: p, kind: kind))
                    binCount[ai] += 1; binBytes[ai] &+= sizeField & ~7
                    prev = p; p = next
                }
                // A large bin's size ring: fd_nextsize and bk_nextsize are 0 or chunks of this bin.
                if kind == .large && listed.count > first {
                    let members = Set(listed[first...].map(\.address))
                    for c in listed[first...] {
                        for (name, off) in [("fd_nextsize", UInt64(32)), ("bk_nextsize", 40)] {
                            guard let v = image.word(c.address + off), v != 0, !members.contains(v) else { continue }
                            warnings.append(.init(.corruptList, c.address, "large bin \(i) of arena \(ai): chunk 0x\(hex(c.address)) \(name) 0x\(hex(v)) is not a chunk of this bin"))
                        }
                    }
                }
            }
        }

        tt.mark("walk: bins")
        // 2. Every thread's tcache.
        let cacheOf = findThreadCaches()
        var tcacheStructs: Set<UInt64> = []
        var threadInfos: [ThreadInfo] = []
        for t in threads {
            let cache = cacheOf[t.tid]
            threadInfos.append(ThreadInfo(tid: t.tid, pc: t.pc, sp: t.stackPointer, threadPointer: t.fsBase, cacheAddress: cache))
            guard let tc = cache else { continue }
            tcacheStructs.insert(tc - L.headerSize)
            let defaultCount = image.word(mp + L.mpTcacheCount) ?? 7
            for i in 0..<L.tcacheBins {
                let countAddr = tc + UInt64(i * L.tcacheCountWidth)
                let raw = L.tcacheCountWidth == 1 ? UInt64(image.u8(countAddr) ?? 0) : UInt64(image.u16(countAddr) ?? 0)
                let expected = L.tcacheCountsAreFreeSlots ? (defaultCount >= raw ? defaultCount - raw : 0) : raw
                var e = image.word(tc + L.tcacheEntries + UInt64(8 * i)) ?? 0
                var n: UInt64 = 0
                var guardC = CycleGuard()
                let first = listed.count
                while e != 0 {
                    guard e & L.alignMask == 0, let sizeField = image.word(e - 8), let next = image.word(e) else {
                        warnings.append(.init(.corruptList, e, "tcache bin \(i) of thread \(t.tid): entry 0x\(hex(e)) is misaligned or unreadable")); break
                    }
                    if guardC.step(e) || guardC.hops > maxListHops {
                        warnings.append(.init(.listCycle, e - 16, "tcache bin \(i) of thread \(t.tid) loops at chunk 0x\(hex(e - 16))"))
                        listed.dropRepeats(from: first)
                        n = UInt64(listed.count - first)
                        break
                    }
                    if let want = L.tcacheBinSize(i), sizeField & ~7 != want {
                        warnings.append(.init(.corruptChunk, e - 16, "tcache bin \(i) of thread \(t.tid): chunk 0x\(hex(e - 16)) has size 0x\(hex(sizeField & ~7)), expected 0x\(hex(want))"))
                    }
                    listed.append(ListedFree(address: e - 16, kind: .tcache))
                    n += 1
                    e = L.reveal(e, next)
                }
                if n != expected {
                    warnings.append(.init(.countMismatch, tc, "tcache bin \(i) of thread \(t.tid): count says \(expected), list holds \(n)"))
                }
            }
        }

        // 3. One pass over every segment, chunk by chunk, classifying as it goes against the
        //    sorted list of everything the free lists and tcache pointers named.
        for tc in tcacheStructs { listed.append(ListedFree(address: tc, kind: .mallocInternal)) }
        listed.sort { $0.address < $1.address }
        for k in stride(from: 1, to: listed.count, by: 1) where listed[k].address == listed[k - 1].address {
            warnings.append(.init(.corruptList, listed[k].address, "chunk 0x\(hex(listed[k].address)) is in two free lists (\(kinds.name(listed[k - 1].kind)) and \(kinds.name(listed[k].kind))): double free?"))
        }
        tt.mark("walk: tcaches")
        var cols = ChunkTable.Builder()
        cols.reserve(estimateChunkCount())
        var tally = SegmentTally(arenas: arenas.count, kinds: kinds.kinds.count)
        var fi = 0
        var tops = [UInt64](repeating: 0, count: arenas.count), topSizes = [UInt64](repeating: 0, count: arenas.count)
        for (ai, ar) in arenas.enumerated() {
            tops[ai] = image.word(ar + L.arenaTop) ?? 0
            topSizes[ai] = (image.word(tops[ai] + 8) ?? 0) & ~7
            // A top chunk runs to the end of its heap at most ("House of Force" sets its size to ~0).
            // The heap's end as read while stopped (heap_info's size, the main arena's sbrk end),
            // not the mapping as listed before the stop: a heap that grew since then (grow_heap's
            // mprotect) is longer than that mapping.
            let seg = segments.first { $0.arena == ai && $0.mapped.start <= tops[ai] && tops[ai] < $0.mapped.end }
            if let end = seg?.mapped.end ?? mapping(containing: tops[ai])?.end {
                if topSizes[ai] > end - tops[ai] {
                    if ai != 0 {   // (the main arena's was reported and clamped in the capture)
                        warnings.append(.init(.corruptArena, tops[ai], "arena \(ai) top chunk 0x\(hex(tops[ai])) has size 0x\(hex(topSizes[ai])), past the end of its heap 0x\(hex(end))"))
                    }
                    topSizes[ai] = end - tops[ai]
                }
            }
        }
        let segs = (segments + resolveMainRegions(top: tops.first ?? 0, topSize: topSizes.first ?? 0, warnings: &warnings))
            .sorted { $0.firstChunk < $1.firstChunk }
        // Segments and mmapped chunks are disjoint: visiting them in address order keeps the table sorted.
        var mmapped = Tally()
        var mmappedMapBytes: UInt64 = 0
        let mm = mmappedChunks.sorted { $0.address < $1.address }
        var mi = 0
        func takeMmapped(below limit: UInt64) {
            while mi < mm.count, mm[mi].address < limit {
                let m = mm[mi]
                cols.append(m.address, m.size, .mmapped, ChunkTable.noArena)
                mmapped.add(m.size)
                mmappedMapBytes += m.size + m.lead + L.mmappedTrailer
                mi += 1
            }
        }
        for seg in segs {
            takeMmapped(below: seg.firstChunk)
            walkSegment(seg, top: tops[seg.arena], topSize: topSizes[seg.arena], listed: listed, fi: &fi,
                        cols: &cols, tally: &tally, warnings: &warnings)
        }
        takeMmapped(below: .max)
        tt.mark("walk: segments")
        while fi < listed.count {
            warnings.append(.init(.corruptList, listed[fi].address, "\(kinds.name(listed[fi].kind)) list entry 0x\(hex(listed[fi].address)) is not a chunk of any heap segment"))
            fi += 1
        }
        let ordered = cols.isOrdered
        var table = cols.table(kinds: kinds)
        if !ordered { table.sortByAddress() }   // segments overlapped (corrupt heap_info)
        let nMmaps = UInt64(image.u32(mp + L.mpNMmaps) ?? 0)
        let mmappedMem = image.word(mp + L.mpMmappedMem) ?? 0
        if UInt64(mmapped.count) != nMmaps || mmappedMapBytes != mmappedMem {
            warnings.append(.init(.totalsMismatch, nil, "found \(mmapped.count) mmapped chunks in \(mmappedMapBytes) bytes; malloc counts \(nMmaps) in \(mmappedMem) bytes"))
        }

        // 5. Per-arena summaries and mallinfo2, counted exactly as glibc's int_mallinfo does,
        // from the per-(arena, kind) tallies the segment walk kept.
        let nStates = kinds.kinds.count
        let counts = tally.counts, sums = tally.sums
        var byArena = [[ChunkKind: Tally]](repeating: [:], count: arenas.count)
        for a in 0..<arenas.count {
            for st in kinds.all where counts[a * nStates + Int(st.rawValue)] > 0 {
                byArena[a][st] = Tally(count: counts[a * nStates + Int(st.rawValue)], bytes: sums[a * nStates + Int(st.rawValue)])
            }
        }
        var info = MallInfo2()
        var summaries: [ArenaSummary] = []
        for (ai, ar) in arenas.enumerated() {
            var sys = image.word(ar + L.arenaSystemMem) ?? 0
            let segBytes = segs.filter { $0.arena == ai }.reduce(UInt64(0)) { $0 &+ ($1.mapped.end - $1.mapped.start) }
            // system_mem can exceed the segments (a racing copy) but never the address space.
            if sys > 1 << 47 {
                warnings.append(.init(.corruptArena, ar + L.arenaSystemMem, "arena \(ai): system_mem is \(sys) bytes, more than the address space; the segments' \(segBytes) bytes are counted instead"))
                sys = segBytes
            }
            let avail = topSizes[ai] &+ fastBytes[ai] &+ binBytes[ai]
            info.arena &+= sys
            info.ordblks += 1 + UInt64(binCount[ai])
            info.smblks += UInt64(fastCount[ai])
            info.fsmblks += fastBytes[ai]
            info.fordblks += avail
            // glibc subtracts without a check; a copy taken while the heap was changing can hold
            // more free bytes than system_mem: say so instead of wrapping around.
            if avail > sys {
                warnings.append(.init(.totalsMismatch, ar, "arena \(ai): free chunks and top hold \(avail) bytes, more than its system_mem \(sys) (the heap was changing)"))
            } else {
                info.uordblks += sys - avail
            }
            let mutex = UInt32(truncatingIfNeeded: image.word(ar + L.arenaMutex) ?? 0)
            // Self-check: an arena's segments add up to its system_mem.
            if segBytes != sys {
                warnings.append(.init(.totalsMismatch, ar, "arena \(ai): its heap segments hold \(segBytes) bytes, system_mem says \(sys)"))
            }
            summaries.append(ArenaSummary(index: ai, address: ar, isMain: ai == 0, systemBytes: sys,
                                          segments: segs.filter { $0.arena == ai }.map { $0.mapped },
                                          attachedThreads: image.word(ar + L.arenaAttachedThreads) ?? 0, mutexHeld: mutex != 0,
                                          byKind: byArena[ai], top: tops[ai], topSize: topSizes[ai]))
        }
        info.hblks = nMmaps
        info.hblkhd = mmappedMem
        info.keepcost = topSizes.first ?? 0
        return HeapWalk(arenas: summaries, mmapped: mmapped, mallinfo2: info, chunks: table,
                        threads: threadInfos, warnings: HeapWarning.bounded(warnings), exitedThreads: exited,
                        trimmableBytes: tally.trimmable)
    }

    /// glibc's kinds of chunk, with this layout's header sizes.
    public var kinds: AllocatorKinds { target.layout.kinds }

    private func estimateChunkCount() -> Int {
        let bytes = segments.reduce(UInt64(0)) { $0 + ($1.end - $1.firstChunk) }
        return Int(min(bytes / 64, 200_000_000)) + mmappedChunks.count + 16
    }

    /// Segments this long or longer are walked in two pieces at once, on two CPUs. (The environment
    /// variable HEAPSCOPE_WALK_SPLIT=BYTES sets it, for tests: every segment of that length is split.)
    static let splitBytes: UInt64 = getenv("HEAPSCOPE_WALK_SPLIT").flatMap { UInt64(String(cString: $0)) }
        ?? (BackgroundWork<Void>.secondCPU ? 64 << 20 : .max)

    /// Walk one segment by chunk sizes. Bad size fields are reported and the walk resumes at the
    /// next chunk known from the free lists, if any. A long segment is walked in two pieces at
    /// once: the second from a chunk boundary near its middle, on a thread of its own; when the
    /// first piece ends exactly there, the second is what one walk would find from there on (a
    /// walk from a chunk depends on nothing before it but the free lists), and is taken;
    /// otherwise it is dropped and the first goes on alone.
    private func walkSegment(_ seg: HeapSegment, top: UInt64, topSize: UInt64, listed: [ListedFree], fi: inout Int,
                             cols: inout ChunkTable.Builder, tally: inout SegmentTally, warnings: inout [HeapWarning]) {
        guard let reg = image.region(containing: seg.firstChunk, length: 16) else {
            warnings.append(.init(.unreadable, seg.firstChunk, "heap segment at 0x\(hex(seg.firstChunk)) was not copied")); return
        }
        let w = SegmentWalker(layout: target.layout, kinds: kinds, seg: seg, base: UnsafeRawPointer(reg.base), regionStart: reg.start,
                              regionEnd: reg.end, top: top, topSize: topSize)
        let c = kinds.kinds.count < 15 ? w.splitPoint(minimum: Self.splitBytes) : nil
        let end = w.walk(split: c, listed: listed, fi: &fi, cols: &cols, tally: &tally, warnings: &warnings)
        if w.holdsTop && !end.reachedTop {
            warnings.append(.init(.corruptChunk, end.p, "walk of arena \(seg.arena) stopped at 0x\(hex(end.p)) before reaching top 0x\(hex(top))"))
        }
    }

    /// Each thread's tcache pointer (the offset was found in the capture, from a sample of threads).
    func findThreadCaches() -> [Int32: UInt64] {
        guard let d = tcacheDelta else { return [:] }
        var out: [Int32: UInt64] = [:]
        for t in threads where t.fsBase >= d { if let v = image.word(t.fsBase - d), v != 0 { out[t.tid] = v } }
        return out
    }

    /// Each thread's tcache pointer lives at the same offset below its thread pointer (static TLS).
    /// Find that offset from `withTP` (threads whose TLS windows were copied): at it, every thread
    /// holds 0 or a valid tcache_perthread_struct.
    func findTcacheDelta(_ withTP: [StoppedThread]) -> UInt64? {
        let L = target.layout
        guard !withTP.isEmpty else { return nil }
        let arenaSet = Set(arenas)
        // A candidate tcache struct: the right chunk size, and every non-empty entry a chunk of its
        // bin's size. nil = cannot tell (memory not copied).
        var verdicts: [UInt64: Bool?] = [:]
        func isCache(_ v: UInt64) -> Bool? {
            if let c = verdicts[v] { return c }
            var ok: Bool? = true
            if v & L.alignMask != 0 { ok = false }
            else if let sf = image.word(v - 8) { if sf & ~7 != L.tcacheChunkSize || sf & L.isMmapped != 0 { ok = false } }
            else { ok = nil }
            if ok == true {
                for i in 0..<L.tcacheBins {
                    guard let e = image.word(v + L.tcacheEntries + UInt64(8 * i)) else { ok = nil; break }
                    if e == 0 { continue }
                    guard e & L.alignMask == 0 else { ok = false; break }
                    guard let sf = image.word(e - 8) else { continue }
                    if let want = L.tcacheBinSize(i), sf & ~7 != want { ok = false; break }
                }
            }
            verdicts[v] = ok
            return ok
        }
        let mainFirst = segments.first(where: { $0.arena == 0 })?.firstChunk
        var best: (delta: UInt64, score: Int, mainFirst: Bool)? = nil
        var delta: UInt64 = 8
        while delta < 0x4000 {
            var score = 0, bad = false, hitsMainFirst = false
            for t in withTP {
                guard let v = image.word(t.fsBase - delta) else { bad = true; break }
                if v == 0 { continue }
                guard let verdict = isCache(v) else { continue }
                if !verdict { bad = true; break }
                if let ta = target.threadArenaTLSOffset, let tc = target.tcacheTLSOffset,
                   let arenaSlot = image.word(t.fsBase - delta + ta - tc), arenaSlot != 0, !arenaSet.contains(arenaSlot) { bad = true; break }
                score += 1
                if t.tid == target.pid, let mf = mainFirst, v == mf + L.headerSize { hitsMainFirst = true }
            }
            if !bad && score > 0 {
                if best == nil || score > best!.score || (score == best!.score && hitsMainFirst && !best!.mainFirst) {
                    best = (delta, score, hitsMainFirst)
                }
            }
            delta += 8
        }
        return best?.delta
    }
}

extension GlibcCapture {
    /// Split the copied mappings of a non-contiguous main arena into its regions: each starts on a
    /// page boundary, and its chunk chain ends exactly at top or at a double fencepost.
    func resolveMainRegions(top: UInt64, topSize: UInt64, warnings: inout [HeapWarning]) -> [HeapSegment] {
        var out: [HeapSegment] = []
        for m in mainRegionMappings {
            guard let reg = image.region(containing: m.start, length: 16) else { continue }
            let end = min(m.end, reg.end)
            var q = m.start
            while q + 32 <= end {
                guard let e = regionEnd(from: q, limit: end, top: top, topSize: topSize, reg: reg) else {
                    q += 4096
                    continue
                }
                out.append(HeapSegment(firstChunk: q, end: e.walkEnd, arena: 0, mapped: Segment(start: q, end: e.regionEnd)))
                q = (e.regionEnd + 4095) & ~4095
            }
        }
        if out.isEmpty && !mainRegionMappings.isEmpty {
            warnings.append(.init(.corruptChunk, top, "main arena is non-contiguous and no region leading to its top 0x\(hex(top)) was found"))
        }
        return out
    }

    /// If a chunk chain from `start` ends at top or at a double fencepost, where that region ends.
    private func regionEnd(from start: UInt64, limit: UInt64, top: UInt64, topSize: UInt64, reg: Region)
        -> (walkEnd: UInt64, regionEnd: UInt64)? {
        let L = target.layout
        var p = start
        var chunks = 0
        while p + 16 <= limit {
            if p == top { return chunks > 0 || p == start ? (top + 16, top + topSize) : nil }
            let sf = reg.word(p + 8)
            let sz = sf & ~7
            guard sz >= 16, sz & L.alignMask == 0, sf & L.isMmapped == 0, p + sz > p, p + sz <= limit else { return nil }
            if sz == 16, p + 32 <= limit, reg.word(p + 24) & ~7 == 16 { return chunks > 0 ? (p + 32, p + 32) : nil }
            chunks += 1
            p += sz
        }
        return nil
    }
}

/// Where walked chunks go: the chunk table's builder, or a piece walked on another thread.
protocol ChunkSink {
    mutating func append(_ a: UInt64, _ s: UInt64, _ k: ChunkKind, _ ar: UInt16)
}
extension ChunkTable.Builder: ChunkSink {}

/// The second piece of a segment walked in two: its chunks as 8 bytes each (size << 4 | kind;
/// a chunk that does not start where the one before ends is preceded by UInt64.max and its
/// address), what it counted, warned and reached.
struct SegmentPiece {
    let start: UInt64
    var recorder: Recorder
    var tally: SegmentTally
    var warnings: [HeapWarning] = []
    var fi = 0
    var end = SegmentWalker.End(p: 0, reachedTop: false, finished: true)
    init(start: UInt64, tally: SegmentTally) { self.start = start; recorder = Recorder(entries: [], next: start); self.tally = tally }

    struct Recorder: ChunkSink {
        var entries: [UInt64], next: UInt64
        @inline(__always) mutating func append(_ a: UInt64, _ s: UInt64, _ k: ChunkKind, _ ar: UInt16) {
            if a != next { entries.append(.max); entries.append(a) }
            entries.append(s << 4 | UInt64(k.rawValue))
            next = a &+ s
        }
    }

    /// The chunks into `cols`, as the walk found them.
    func replay(into cols: inout ChunkTable.Builder, arena: UInt16) {
        var a = start, i = 0
        recorder.entries.withUnsafeBufferPointer { e in
            while i < e.count {
                if e[i] == .max { a = e[i + 1]; i += 2 }
                let s = e[i] >> 4
                cols.append(a, s, ChunkKind(UInt8(e[i] & 15)), arena)
                a &+= s; i += 1
            }
        }
    }
}

extension SegmentTally {
    mutating func add(_ other: SegmentTally) {
        for i in counts.indices { counts[i] += other.counts[i]; sums[i] &+= other.sums[i] }
        trimmable &+= other.trimmable
    }
}

/// The chunk-by-chunk walk of one copied heap segment (read only: pieces of one segment can be
/// walked on two threads at once).
struct SegmentWalker: @unchecked Sendable {
    let layout: GlibcLayout, kinds: AllocatorKinds, seg: HeapSegment
    let base: UnsafeRawPointer, regionStart: UInt64, regionEnd: UInt64
    let top: UInt64, topSize: UInt64
    var limit: UInt64 { min(seg.end, regionEnd) }
    var holdsTop: Bool { top >= seg.firstChunk && top < seg.end }

    /// Where a walk stopped: at `p`; whether it reached the top chunk; `finished`: the segment is
    /// done (top, end, fencepost, or damage with nowhere to resume), not stopped by `until`.
    struct End { var p: UInt64; var reachedTop: Bool; var finished: Bool }

    @inline(__always) func sizeField(_ p: UInt64) -> UInt64 { base.loadUnaligned(fromByteOffset: Int(p - regionStart + 8), as: UInt64.self) }

    /// The listed chunks below `p` that no chunk boundary met: reported as the walk does.
    func passListed(below p: UInt64, listed: [ListedFree], fi: inout Int, warnings: inout [HeapWarning]) {
        while fi < listed.count, listed[fi].address < p {
            warnings.append(.init(.corruptList, listed[fi].address, "\(kinds.name(listed[fi].kind)) list entry 0x\(hex(listed[fi].address)) is not at a chunk boundary"))
            fi += 1
        }
    }

    /// The whole segment into `cols`; with `split`, in two pieces at once, the second from
    /// `split` on a thread of its own, joined when the first ends exactly there, else dropped.
    func walk(split: UInt64?, listed: [ListedFree], fi: inout Int, cols: inout ChunkTable.Builder,
              tally: inout SegmentTally, warnings: inout [HeapWarning]) -> End {
        guard let c = split else {
            return walk(from: seg.firstChunk, until: .max, listed: listed, fi: &fi, sink: &cols, tally: &tally, warnings: &warnings)
        }
        let fresh = SegmentTally(arenas: tally.counts.count / tally.kinds, kinds: tally.kinds)
        var second = BackgroundWork { () -> SegmentPiece in
            var piece = SegmentPiece(start: c, tally: fresh)
            piece.recorder.entries.reserveCapacity(Int((limit - min(c, limit)) / 48) + 16)   // (pages touched only as filled)
            var lo = 0, hi = listed.count   // the first listed chunk at or after c
            while lo < hi { let m = (lo + hi) / 2; if listed[m].address < c { lo = m + 1 } else { hi = m } }
            piece.fi = lo
            piece.end = walk(from: c, until: .max, listed: listed, fi: &piece.fi, sink: &piece.recorder, tally: &piece.tally, warnings: &piece.warnings)
            return piece
        }
        var end = walk(from: seg.firstChunk, until: c, listed: listed, fi: &fi, sink: &cols, tally: &tally, warnings: &warnings)
        let piece = second.wait()
        let joined = !end.finished && end.p == c
        PhaseTrace().note("walk: segment 0x\(hex(seg.firstChunk)) in two pieces from 0x\(hex(c)): " + (joined ? "joined" : "second dropped"))
        if joined {
            passListed(below: c, listed: listed, fi: &fi, warnings: &warnings)
            piece.replay(into: &cols, arena: UInt16(seg.arena))
            tally.add(piece.tally)
            warnings.append(contentsOf: piece.warnings)
            fi = piece.fi
            end = piece.end
        } else if !end.finished {
            end = walk(from: end.p, until: .max, listed: listed, fi: &fi, sink: &cols, tally: &tally, warnings: &warnings)
        }
        return end
    }

    /// Where to start a second piece: a chunk header near the middle of the segment (of at least
    /// `minimum` bytes) from which 32 chunks in a row look whole; nil for a shorter segment, or
    /// when none is found within 64 KiB.
    func splitPoint(minimum: UInt64) -> UInt64? {
        let L = layout
        let bound = holdsTop ? top : limit
        guard bound > seg.firstChunk, bound - seg.firstChunk >= max(minimum, 4096) else { return nil }
        var q = seg.firstChunk + ((bound - seg.firstChunk) / 2 & ~L.alignMask)
        let stop = min(bound, q + (64 << 10))
        search: while q < stop {
            defer { q += L.alignMask + 1 }
            var x = q
            for _ in 0..<32 {
                if x == top { break }
                guard x + 16 <= limit else { continue search }
                let sf = sizeField(x), sz = sf & ~7
                guard sz >= 32, sz & L.alignMask == 0, sf & L.isMmapped == 0, x &+ sz > x, x + sz <= bound,
                      seg.arena != 0 || sf & L.nonMainArena == 0 else { continue search }
                x += sz
            }
            return q
        }
        return nil
    }

    /// Walk from the chunk at `start` until the segment ends or the walk reaches `until` or past it.
    func walk<S: ChunkSink>(from start: UInt64, until stop: UInt64, listed: [ListedFree], fi: inout Int, sink: inout S,
                            tally: inout SegmentTally, warnings: inout [HeapWarning]) -> End {
        let L = layout
        let arena = UInt16(seg.arena)
        let limit = self.limit
        var p = start
        while p + 16 <= limit {
            if p >= stop { return End(p: p, reachedTop: false, finished: false) }
            passListed(below: p, listed: listed, fi: &fi, warnings: &warnings)
            if p == top {
                sink.append(p, topSize, .top, arena)
                tally.add(seg.arena, .top, p, topSize)
                return End(p: p, reachedTop: true, finished: true)
            }
            let sf = sizeField(p)
            let sz = sf & ~7
            if sz == 0 { break }                              // end-of-heap fencepost
            let nextP = p &+ sz
            let bound = holdsTop ? top : seg.end
            if sz & L.alignMask != 0 || sz < 16 || nextP > bound || nextP < p || sf & L.isMmapped != 0 {
                let why = sz & L.alignMask != 0 ? "misaligned size" : (sz < 16 ? "size too small" :
                          (sf & L.isMmapped != 0 ? "IS_MMAPPED set inside an arena" : "size runs past the end of the heap"))
                // Resume at the next chunk known from a free list or a tcache pointer, past this one
                // (which may itself be listed: a free chunk whose size was overwritten).
                while fi < listed.count, listed[fi].address <= p { fi += 1 }
                var resume: UInt64? = fi < listed.count && listed[fi].address < bound ? listed[fi].address : nil
                if resume == nil && holdsTop && top > p { resume = top }
                let skip = resume.map { "resumed at 0x\(hex($0)), skipping \($0 - p) bytes" } ?? "rest of segment skipped"
                warnings.append(.init(.corruptChunk, p, "chunk 0x\(hex(p)): size field 0x\(hex(sf)) is invalid (\(why)); \(skip)"))
                guard let r = resume else { break }
                p = r
                continue
            }
            if sz == 16 {                                      // 0x10 fencepost: malloc's, not a chunk
                // Two in a row close a main-arena region whose top moved elsewhere.
                if nextP + 16 <= limit, sizeField(nextP) & ~7 == 16 { break }
                p = nextP; continue
            }
            let nextInUse = nextP + 16 <= regionEnd ? (sizeField(nextP) & L.prevInUse != 0) : true
            var st: ChunkKind
            if fi < listed.count, listed[fi].address == p {
                st = listed[fi].kind
                fi += 1
                while fi < listed.count, listed[fi].address == p { fi += 1 }   // duplicate: reported above
                let cached = st == .tcache || st == .fastbin || st == .mallocInternal
                if cached != nextInUse {
                    warnings.append(.init(.corruptChunk, p, "\(kinds.name(st)) chunk 0x\(hex(p)): next chunk's PREV_INUSE is \(nextInUse ? 1 : 0)"))
                }
            } else if !nextInUse {
                st = sz < 0x400 ? .small : .large
                warnings.append(.init(.unlistedFree, p, "chunk 0x\(hex(p)) is free (next PREV_INUSE clear) but in no bin"))
            } else {
                st = .inUse
            }
            // NON_MAIN_ARENA: never on a main-arena chunk; always on a non-main arena's chunk in use.
            if (sf & L.nonMainArena != 0) != (seg.arena != 0) && (seg.arena == 0 || st == .inUse) {
                warnings.append(.init(.corruptChunk, p, "chunk 0x\(hex(p)) of arena \(seg.arena): NON_MAIN_ARENA is \(sf & L.nonMainArena != 0 ? "set" : "clear")"))
            }
            sink.append(p, sz, st, arena)
            tally.add(seg.arena, st, p, sz)
            p = nextP
        }
        return End(p: p, reachedTop: false, finished: true)
    }
}
