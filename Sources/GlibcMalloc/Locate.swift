import HeapModel
import ProcessAccess

/// Finding main_arena and mp_: from symbols when the target's libc has debug info, otherwise by
/// their signatures in libc's writable data (reference §8.2 methods 3 and 5). Either way the
/// result is cross-checked (arena ring closes, top is mapped, sbrk_base + system_mem == top end).
extension GlibcCapture {
    func locateRoots(remote: RemoteMemory) throws(GlibcError) {
        let L = target.layout
        var how: [String] = []
        if let sym = target.mainArenaSymbol {
            mainArena = sym
            how.append("main_arena from \(target.symbolSource)")
        } else if let sig = scanForMainArena(remote: remote) {
            mainArena = sig.base
            how.append("main_arena by signature (\(sig.votes) self-linked bins, arena ring closes)")
        } else {
            throw .mainArenaNotFound("no symbols for it and no malloc_state signature in \(target.dataRanges.count) writable data ranges")
        }
        guard let top = remote.word(mainArena + L.arenaTop), top != 0 else { throw .notInitialised }
        if let sym = target.mpSymbol {
            mp = sym
            how.append("mp_ from \(target.symbolSource)")
        } else if let m = scanForMp(remote: remote) {
            mp = m.0
            how.append("mp_ by signature (\(m.1))")
        } else {
            throw .mainArenaNotFound("found main_arena at 0x\(hex(mainArena)) but no mp_ (malloc_par) signature")
        }
        if target.mainArenaSymbol != nil && target.mpSymbol != nil {
            discovery = "main_arena and mp_ from \(target.symbolSource)"
        } else {
            discovery = how.joined(separator: ", ")
        }
    }

    /// Every 8-aligned slot pair that holds its own address minus 16 is an empty bin; each votes
    /// for the arena bases it could belong to; candidates are accepted only if the `next` ring closes.
    func scanForMainArena(remote: RemoteMemory?) -> (base: UInt64, votes: Int)? {
        let L = target.layout
        var best: (base: UInt64, votes: Int)? = nil
        for r in target.dataRanges {
            guard let reg = image.region(containing: r.start) else { continue }
            let start = (r.start + 7) & ~7
            let end = min(r.end, reg.end)
            guard end > start + 16 else { continue }
            // votes[j] counts empty bins that place the arena at start + 8j.
            var votes = [UInt16](repeating: 0, count: Int((end - start) / 8) + 1)
            var s = start
            while s + 16 <= end {
                let v = reg.word(s)
                if v == s &- 16, reg.word(s + 8) == v {
                    for k in 0..<UInt64(L.nBins - 1) {
                        let base = s &- L.arenaBins &- 16 * k
                        if base >= start && base < s { votes[Int((base - start) / 8)] &+= 1 }
                    }
                }
                s += 8
            }
            let order = votes.indices.filter { votes[$0] >= 4 }.sorted { votes[$0] > votes[$1] || (votes[$0] == votes[$1] && $0 < $1) }
            for j in order {
                let base = start + UInt64(j) * 8
                if ringCloses(base, remote: remote), let top = image.word(base + L.arenaTop),
                   top == 0 || target.maps.contains(where: { $0.contains(top) }) {
                    if best == nil || Int(votes[j]) > best!.votes { best = (base, Int(votes[j])) }
                    break
                }
            }
        }
        return best
    }

    /// main_arena's `next` ring returns to it. Reads the copy where it can, the target otherwise.
    func ringCloses(_ base: UInt64, remote: RemoteMemory?) -> Bool {
        let L = target.layout
        var a = base
        for _ in 0..<4096 {
            guard let n = image.word(a + L.arenaNext) ?? remote?.word(a + L.arenaNext), n & 7 == 0 else { return false }
            if n == base { return true }
            a = n
        }
        return false
    }

    /// After detaching: when symbols named main_arena, check that the signature method agrees.
    func crossCheckSignature() -> HeapWarning? {
        guard target.mainArenaSymbol != nil else { return nil }
        guard let sig = scanForMainArena(remote: nil) else {
            return .init(.totalsMismatch, mainArena, "symbols name main_arena 0x\(hex(mainArena)) but its signature is not found there")
        }
        return sig.base == mainArena ? nil :
            .init(.totalsMismatch, sig.base, "main_arena signature scan found 0x\(hex(sig.base)), symbols say 0x\(hex(mainArena))")
    }

    /// mp_: with a contiguous main arena, sbrk_base == top + size(top) - system_mem; otherwise
    /// the compiled-in defaults (arena_test 8, n_mmaps_max 65536, tcache_bins 64).
    func scanForMp(remote: RemoteMemory) -> (UInt64, String)? {
        let L = target.layout
        let top = remote.word(mainArena + L.arenaTop) ?? 0
        let topSize = (remote.word(top + 8) ?? 0) & ~7
        let sys = remote.word(mainArena + L.arenaSystemMem) ?? 0
        let flags = UInt32(truncatingIfNeeded: remote.word(mainArena + L.arenaFlags) ?? 0)
        let expectedSbrk = top &+ topSize &- sys
        func sane(_ c: UInt64) -> Bool {
            guard let nm = image.u32(c + L.mpNMmaps), let nmMax = image.u32(c + L.mpNMmapsMax),
                  let tb = image.word(c + L.mpTcacheBins), let mmThr = image.word(c + 0x10),
                  let mem = image.word(c + L.mpMmappedMem) else { return false }
            return Int32(bitPattern: nm) >= 0 && nm <= nmMax && tb <= 76 && mmThr > 0 && mmThr <= 1 << 40
                && (nm == 0) == (mem == 0)
        }
        for r in target.dataRanges {
            var x = (r.start + 7) & ~7
            while x + 8 <= r.end {
                if x >= r.start + L.mpSbrkBase, let w = image.word(x) {
                    let c = x - L.mpSbrkBase
                    if flags & L.noncontiguousBit == 0, w == expectedSbrk, w != 0, sane(c) {
                        return (c, "sbrk_base + system_mem == end of top")
                    }
                }
                x += 8
            }
        }
        for r in target.dataRanges {
            var c = (r.start + 7) & ~7
            while c + L.mpSize <= r.end {
                if image.word(c + 0x18) == 8, image.u32(c + L.mpNMmapsMax) == 65536, image.word(c + L.mpTcacheBins) == 64, sane(c) {
                    return (c, "compiled-in defaults")
                }
                c += 8
            }
        }
        return nil
    }
}
