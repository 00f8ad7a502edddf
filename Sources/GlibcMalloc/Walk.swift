import HeapModel
import ProcessAccess

/// What walking a captured glibc heap produced.
public struct GlibcWalkResult: Sendable {
    public var arenas: [ArenaSummary]
    public var mmapped: Tally
    public var mallinfo2: MallInfo2
    public var chunks: ChunkTable
    public var threads: [ThreadInfo]
    public var warnings: [HeapWarning]
}

/// A free chunk as found in one of malloc's lists.
struct ListedFree {
    var address: UInt64
    var kind: ChunkState
}

/// Bounded list walks: every list stops at a cycle, an unreadable or misaligned link, or this many hops.
let maxListHops = 50_000_000

extension GlibcCapture {
    public func walk() -> GlibcWalkResult {
        let L = target.layout
        var warnings = self.warnings
        if let w = crossCheckSignature() { warnings.append(w) }
        var listed: [ListedFree] = []
        var fastCount = [Int](repeating: 0, count: arenas.count), fastBytes = [UInt64](repeating: 0, count: arenas.count)
        var binCount = [Int](repeating: 0, count: arenas.count), binBytes = [UInt64](repeating: 0, count: arenas.count)

        // 1. Fastbins and regular bins of every arena.
        for (ai, ar) in arenas.enumerated() {
            for i in 0..<L.nFastbins {
                var c = image.word(ar + L.arenaFastbins + UInt64(8 * i)) ?? 0
                var seen: Set<UInt64> = []
                while c != 0 {
                    guard c & L.alignMask == 0, let sizeField = image.word(c + 8) else {
                        warnings.append(.init(.corruptList, c, "fastbin \(i) of arena \(ai): link to 0x\(hex(c)) is misaligned or unreadable")); break
                    }
                    if !seen.insert(c).inserted || seen.count > maxListHops {
                        warnings.append(.init(.listCycle, c, "fastbin \(i) of arena \(ai) loops at chunk 0x\(hex(c))")); break
                    }
                    let sz = sizeField & ~7
                    if sz != 0x20 + 16 * UInt64(i) {
                        warnings.append(.init(.corruptChunk, c, "fastbin \(i) of arena \(ai): chunk 0x\(hex(c)) has size 0x\(hex(sz)), expected 0x\(hex(0x20 + 16 * UInt64(i)))"))
                    }
                    listed.append(ListedFree(address: c, kind: .fastbin))
                    fastCount[ai] += 1; fastBytes[ai] += sz
                    c = L.reveal(c + 16, image.word(c + 16) ?? 0)
                }
            }
            for i in 1..<L.nBins {
                let b = L.binAt(ar, i)
                var p = image.word(b + 16) ?? b
                var prev = b
                var seen: Set<UInt64> = []
                let kind: ChunkState = i == 1 ? .unsorted : (L.binKindIsSmall(i) ? .small : .large)
                while p != b {
                    guard p & L.alignMask == 0, let sizeField = image.word(p + 8), let next = image.word(p + 16) else {
                        warnings.append(.init(.corruptList, p, "bin \(i) of arena \(ai): link to 0x\(hex(p)) is misaligned or unreadable")); break
                    }
                    if !seen.insert(p).inserted || seen.count > maxListHops {
                        warnings.append(.init(.listCycle, p, "bin \(i) of arena \(ai) loops at chunk 0x\(hex(p))")); break
                    }
                    if image.word(p + 24) != prev {
                        warnings.append(.init(.corruptList, p, "bin \(i) of arena \(ai): chunk 0x\(hex(p)) bk does not point back to 0x\(hex(prev))"))
                    }
                    listed.append(ListedFree(address: p, kind: kind))
                    binCount[ai] += 1; binBytes[ai] += sizeField & ~7
                    prev = p; p = next
                }
            }
        }

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
                var seen: Set<UInt64> = []
                while e != 0 {
                    guard e & L.alignMask == 0, let sizeField = image.word(e - 8), let next = image.word(e) else {
                        warnings.append(.init(.corruptList, e, "tcache bin \(i) of thread \(t.tid): entry 0x\(hex(e)) is misaligned or unreadable")); break
                    }
                    if !seen.insert(e).inserted || seen.count > maxListHops {
                        warnings.append(.init(.listCycle, e - 16, "tcache bin \(i) of thread \(t.tid) loops at chunk 0x\(hex(e - 16))")); break
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

        // 3. One pass over every segment, chunk by chunk, classifying as it goes.
        listed.sort { $0.address < $1.address }
        for k in stride(from: 1, to: listed.count, by: 1) where listed[k].address == listed[k - 1].address {
            warnings.append(.init(.corruptList, listed[k].address, "chunk 0x\(hex(listed[k].address)) is in two free lists (\(listed[k - 1].kind.name) and \(listed[k].kind.name)): double free?"))
        }
        var table = ChunkTable(userOffset: L.headerSize, usableLoss: L.sizeSz, usableLossMmapped: L.headerSize)
        table.reserve(estimateChunkCount())
        var fi = 0
        let segs = segments.sorted { $0.firstChunk < $1.firstChunk }
        var tops = [UInt64](repeating: 0, count: arenas.count), topSizes = [UInt64](repeating: 0, count: arenas.count)
        for (ai, ar) in arenas.enumerated() {
            tops[ai] = image.word(ar + L.arenaTop) ?? 0
            topSizes[ai] = (image.word(tops[ai] + 8) ?? 0) & ~7
        }
        for seg in segs {
            walkSegment(seg, top: tops[seg.arena], topSize: topSizes[seg.arena], listed: listed, fi: &fi,
                        tcacheStructs: tcacheStructs, table: &table, warnings: &warnings)
        }
        while fi < listed.count {
            warnings.append(.init(.corruptList, listed[fi].address, "\(listed[fi].kind.name) list entry 0x\(hex(listed[fi].address)) is not a chunk of any heap segment"))
            fi += 1
        }

        // 4. mmapped chunks.
        var mmapped = Tally()
        var mmappedMapBytes: UInt64 = 0
        for m in mmappedChunks {
            table.append(address: m.address, size: m.size, state: .mmapped, arena: ChunkTable.noArena)
            mmapped.add(m.size)
            mmappedMapBytes += m.size + m.lead
        }
        table.sortByAddress()
        let nMmaps = UInt64(image.u32(mp + L.mpNMmaps) ?? 0)
        let mmappedMem = image.word(mp + L.mpMmappedMem) ?? 0
        if UInt64(mmapped.count) != nMmaps || mmappedMapBytes != mmappedMem {
            warnings.append(.init(.totalsMismatch, nil, "found \(mmapped.count) mmapped chunks in \(mmappedMapBytes) bytes; malloc counts \(nMmaps) in \(mmappedMem) bytes"))
        }

        // 5. Per-arena summaries and mallinfo2, counted exactly as glibc's int_mallinfo does.
        var byArena = [[ChunkState: Tally]](repeating: [:], count: arenas.count)
        for i in 0..<table.count where table.arena[i] != ChunkTable.noArena {
            byArena[Int(table.arena[i])][table.state[i], default: Tally()].add(table.size[i])
        }
        var mi = MallInfo2()
        var summaries: [ArenaSummary] = []
        for (ai, ar) in arenas.enumerated() {
            let sys = image.word(ar + L.arenaSystemMem) ?? 0
            let avail = topSizes[ai] + fastBytes[ai] + binBytes[ai]
            mi.arena += sys
            mi.ordblks += 1 + UInt64(binCount[ai])
            mi.smblks += UInt64(fastCount[ai])
            mi.fsmblks += fastBytes[ai]
            mi.fordblks += avail
            mi.uordblks += sys &- avail
            let mutex = UInt32(truncatingIfNeeded: image.word(ar + L.arenaMutex) ?? 0)
            summaries.append(ArenaSummary(index: ai, address: ar, isMain: ai == 0, systemBytes: sys,
                                          segments: segs.filter { $0.arena == ai }.map { $0.mapped },
                                          attachedThreads: image.word(ar + L.arenaAttachedThreads) ?? 0, mutexHeld: mutex != 0,
                                          byState: byArena[ai], top: tops[ai], topSize: topSizes[ai]))
        }
        mi.hblks = nMmaps
        mi.hblkhd = mmappedMem
        mi.keepcost = topSizes.first ?? 0
        return GlibcWalkResult(arenas: summaries, mmapped: mmapped, mallinfo2: mi, chunks: table,
                               threads: threadInfos, warnings: warnings)
    }

    private func estimateChunkCount() -> Int {
        let bytes = segments.reduce(UInt64(0)) { $0 + ($1.end - $1.firstChunk) }
        return Int(min(bytes / 48, 200_000_000)) + mmappedChunks.count + 16
    }

    /// Walk one segment by chunk sizes. Bad size fields are reported and the walk resumes at the
    /// next chunk known from the free lists, if any.
    private func walkSegment(_ seg: HeapSegment, top: UInt64, topSize: UInt64, listed: [ListedFree], fi: inout Int,
                             tcacheStructs: Set<UInt64>, table: inout ChunkTable, warnings: inout [HeapWarning]) {
        let L = target.layout
        guard let reg = image.region(containing: seg.firstChunk, length: 16) else {
            warnings.append(.init(.unreadable, seg.firstChunk, "heap segment at 0x\(hex(seg.firstChunk)) was not copied")); return
        }
        let arena = UInt16(seg.arena)
        let limit = min(seg.end, reg.end)
        let base = reg.base, rs = reg.start
        let holdsTop = top >= seg.firstChunk && top < seg.end
        @inline(__always) func sizeField(_ p: UInt64) -> UInt64 { base.loadUnaligned(fromByteOffset: Int(p - rs + 8), as: UInt64.self) }
        var p = seg.firstChunk
        var reachedTop = false
        while p + 16 <= limit {
            while fi < listed.count, listed[fi].address < p {
                warnings.append(.init(.corruptList, listed[fi].address, "\(listed[fi].kind.name) list entry 0x\(hex(listed[fi].address)) is not at a chunk boundary"))
                fi += 1
            }
            if p == top {
                table.append(address: p, size: topSize, state: .top, arena: arena)
                reachedTop = true
                break
            }
            let sf = sizeField(p)
            let sz = sf & ~7
            if sz == 0 { break }                              // end-of-heap fencepost
            let nextP = p &+ sz
            let bound = holdsTop ? top : seg.end
            if sz & L.alignMask != 0 || sz < 16 || nextP > bound || nextP < p || sf & L.isMmapped != 0 {
                let why = sz & L.alignMask != 0 ? "misaligned size" : (sz < 16 ? "size too small" :
                          (sf & L.isMmapped != 0 ? "IS_MMAPPED set inside an arena" : "size runs past the end of the heap"))
                // Resume at the next chunk known from a free list or the tcache structs.
                var resume: UInt64? = fi < listed.count && listed[fi].address < bound ? listed[fi].address : nil
                if let t = tcacheStructs.filter({ $0 > p && $0 < bound }).min(), resume == nil || t < resume! { resume = t }
                if resume == nil && holdsTop { resume = top }
                let skip = resume.map { "resumed at 0x\(hex($0)), skipping \($0 - p) bytes" } ?? "rest of segment skipped"
                warnings.append(.init(.corruptChunk, p, "chunk 0x\(hex(p)): size field 0x\(hex(sf)) is invalid (\(why)); \(skip)"))
                guard let r = resume else { break }
                p = r
                continue
            }
            if sz == 16 { p = nextP; continue }                 // 0x10 fencepost: malloc's, not a chunk
            let nextInUse = nextP + 16 <= reg.end ? (sizeField(nextP) & L.prevInUse != 0) : true
            var st: ChunkState
            if fi < listed.count, listed[fi].address == p {
                st = listed[fi].kind
                fi += 1
                while fi < listed.count, listed[fi].address == p { fi += 1 }   // duplicate: reported above
                let cached = st == .tcache || st == .fastbin
                if cached != nextInUse {
                    warnings.append(.init(.corruptChunk, p, "\(st.name) chunk 0x\(hex(p)): next chunk's PREV_INUSE is \(nextInUse ? 1 : 0)"))
                }
            } else if tcacheStructs.contains(p) {
                st = .mallocInternal
            } else if !nextInUse {
                st = sz < 0x400 ? .small : .large
                warnings.append(.init(.unlistedFree, p, "chunk 0x\(hex(p)) is free (next PREV_INUSE clear) but in no bin"))
            } else {
                st = .inUse
            }
            table.append(address: p, size: sz, state: st, arena: arena)
            p = nextP
        }
        if holdsTop && !reachedTop {
            warnings.append(.init(.corruptChunk, p, "walk of arena \(seg.arena) stopped at 0x\(hex(p)) before reaching top 0x\(hex(top))"))
        }
    }

    /// Each thread's tcache pointer lives at the same offset below its thread pointer (static TLS).
    /// Find that offset: at it, every thread holds 0 or a valid tcache_perthread_struct.
    func findThreadCaches() -> [Int32: UInt64] {
        let L = target.layout
        let withTP = threads.filter { $0.fsBase != 0 }
        guard !withTP.isEmpty else { return [:] }
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
        guard let b = best else { return [:] }
        var out: [Int32: UInt64] = [:]
        for t in withTP { if let v = image.word(t.fsBase - b.delta), v != 0 { out[t.tid] = v } }
        return out
    }
}
