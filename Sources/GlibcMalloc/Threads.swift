import HeapModel
import ProcessAccess

/// Threads that exited but whose stacks glibc still keeps mapped.
///
/// glibc (NPTL) allocates each thread's stack with mmap — guard page at the bottom, the thread
/// descriptor (`struct pthread`, what pthread_self() returns) at the top — and keeps it after the
/// thread exits: until pthread_join for a joinable thread, and afterwards in its stack cache
/// (up to 40 MiB) for reuse. A descriptor is recognised by its TCB header (`tcb` and `self` both
/// point to it); a live thread's thread pointer (fs_base) is its descriptor. What happened to an
/// exited one is in its fields (offsets from GlibcLayout: libc's DWARF, or measured):
///
///   unjoined: tid == 0 (cleared by the kernel at exit), cancelhandling has EXITING (0x10) and not
///             TERMINATED (0x20)
///   cached:   tid == -1 (pthread_join marks it), or TERMINATED set (a detached thread freed itself)
struct NPTLLayout {
    let tid: UInt64
    let cancelHandling: UInt64
    let stackBlock: UInt64
    let stackBlockSize: UInt64
    static let exiting: UInt64 = 0x10, terminated: UInt64 = 0x20

    /// From libc's DWARF, or the offsets measured (gdb `ptype /o struct pthread` with libc6-dbg)
    /// on the exact versions 2.31, 2.36, 2.41, 2.43 and 2.44 (not a range inferred from the
    /// layout: their neighbours are not known). nil otherwise.
    init?(_ layout: GlibcLayout) {
        guard layout.source == "DWARF" || !(layout.inferredRange?.contains("–") ?? false),
              let t = layout.pthreadTid, let c = layout.pthreadCancelHandling, let b = layout.pthreadStackBlock,
              let n = layout.pthreadStackBlockSize else { return nil }
        tid = t; cancelHandling = c; stackBlock = b; stackBlockSize = n
    }
}

extension GlibcCapture {
    /// Runs with the target stopped. A stack block is [stackblock, stackblock + stackblock_size)
    /// of its descriptor, which sits at the same distance below the block's top in every thread of
    /// a process (learned from a live thread's own fields or, failing that, by scanning the top
    /// 64 KiB of a candidate). Up to 2.42 each block is a guard mapping (---p) and a stack mapping;
    /// from 2.43 the guard is made with madvise and neighbouring blocks merge into one rw-p
    /// mapping, so each mapping is walked down from its top, block by block, through the
    /// descriptors' own fields. Candidates: rw-p anonymous mappings right above a guard mapping,
    /// and those at least as large as the smallest live thread's block. nil: this glibc's
    /// descriptors are not known.
    func exitedThreads(remote: RemoteMemory) -> [ExitedThread]? {
        guard let N = NPTLLayout(target.layout) else { return nil }
        let maps = target.maps
        let live = Set(threads.map(\.fsBase))
        // (only in a page in memory: reading any other would map it into the target)
        func inMemory(_ a: UInt64) -> Bool {
            guard let r = residency else { return true }
            return r.residentRuns(start: a & ~4095, end: (a & ~4095) + 4096, prefetch: 0).map { !$0.isEmpty } ?? true
        }
        func isDescriptor(_ pd: UInt64) -> Bool { pd & 63 == 0 && inMemory(pd) && remote.word(pd) == pd && remote.word(pd + 16) == pd }
        /// Whether [a, e) is mapped without a gap (binary search, then the following mappings).
        func mapped(_ a: UInt64, _ e: UInt64) -> Bool {
            var lo = firstMapping(endingAfter: a)
            var at = a
            while lo < maps.count, maps[lo].start <= at {
                at = maps[lo].end
                if at >= e { return true }
                lo += 1
            }
            return false
        }
        /// The block a descriptor names, if it is plausible: it holds the descriptor and is mapped.
        func block(_ pd: UInt64) -> (start: UInt64, end: UInt64)? {
            guard let b = remote.word(pd + N.stackBlock), let n = remote.word(pd + N.stackBlockSize),
                  n > 0, b < pd, b <= UInt64.max - n, b + n > pd, mapped(b, b + n) else { return nil }
            return (b, b + n)
        }
        // The descriptor's distance below its block's top, and the smallest block, from a sample of
        // 16 live threads (not the main thread: its stack is not a block of glibc's).
        var distances: [UInt64] = []
        var smallest = UInt64.max
        for fs in threads.filter({ $0.tid != target.pid }).map(\.fsBase).prefix(16) where isDescriptor(fs) {
            guard let b = block(fs) else { continue }
            if !distances.contains(b.end - fs) { distances.append(b.end - fs) }
            smallest = min(smallest, b.end - b.start)
        }
        // No live thread with a block of its own: any mapping that can hold a stack (16 KiB,
        // PTHREAD_STACK_MIN); scans are bounded below.
        if smallest == .max { smallest = 16 << 10 }
        let mergedStacks = target.layout.major > 2 || target.layout.minor >= 43
        var candidates: [(Mapping, aboveGuard: Bool)] = []
        for (i, m) in maps.enumerated() where m.isAnonymous && m.readable && m.writable && !m.shared {
            let g = i > 0 ? maps[i - 1] : nil
            let aboveGuard = g.map { $0.end == m.start && $0.isAnonymous && !$0.readable && !$0.writable } ?? false
            // (before 2.43 every stack has a guard mapping of its own: only those are candidates)
            if aboveGuard || (mergedStacks && m.end - m.start >= smallest) { candidates.append((m, aboveGuard)) }
        }
        var scans = 0
        var out: [ExitedThread] = []
        for (m, aboveGuard) in candidates {
            // A live thread's own stack mapping (one block above its guard): nothing to read.
            if aboveGuard && distances.contains(where: { m.end > $0 && live.contains(m.end - $0) }) { continue }
            // Walk down from the mapping's top: each block's bottom is the next one's top.
            var top = m.end
            var steps = 0
            while top > m.start && steps < 4096 {
                steps += 1
                var pd = distances.lazy.map { top &- $0 }.first { $0 >= m.start && $0 < top && isDescriptor($0) && block($0)?.end == top }
                if pd == nil && scans < 32 {
                    // Scan the top of the block for a descriptor (64-byte aligned, as glibc aligns it).
                    scans += 1
                    let lo = max(m.start, top - min(top - m.start, 64 << 10))
                    // Its pages in memory only (a page never written holds no descriptor, and
                    // reading it would map it into the target: a stack mapping can be merged
                    // with anything mapped next to it, a pool's untouched end, say).
                    var window: [UInt8]? = nil
                    if let runs = residency?.residentRuns(start: lo, end: top, prefetch: top) {
                        var w = [UInt8](repeating: 0, count: Int(top - lo))
                        for r in runs where r.end > r.start {
                            if let part = remote.bytes(r.start, count: Int(r.end - r.start)) { w.replaceSubrange(Int(r.start - lo)..<Int(r.start - lo) + part.count, with: part) }
                        }
                        window = w
                    } else { window = remote.bytes(lo, count: Int(top - lo)) }
                    if let bytes = window {
                        bytes.withUnsafeBytes { p in
                            var o = (p.count - 64) & ~63
                            while o >= 0 {
                                let a = lo + UInt64(o)
                                if a & 63 == 0, o + 24 <= p.count, p.load(fromByteOffset: o, as: UInt64.self) == a,
                                   p.load(fromByteOffset: o + 16, as: UInt64.self) == a, block(a)?.end == top { pd = a; break }
                                o -= 64
                            }
                        }
                    }
                    if let d = pd, !distances.contains(top - d) { distances.append(top - d) }
                }
                guard let d = pd, let b = block(d) else { break }
                top = b.start
                if live.contains(d) { continue }
                guard let tidWord = remote.word(d + N.tid), let cancel = remote.word(d + N.cancelHandling) else { continue }
                let tid = Int32(truncatingIfNeeded: tidWord), flags = cancel & 0xffff_ffff
                let state: ExitedThread.State
                if tid == 0 && flags & NPTLLayout.exiting != 0 && flags & NPTLLayout.terminated == 0 { state = .unjoined }
                else if tid == -1 || (tid == 0 && flags & NPTLLayout.terminated != 0) { state = .cached }
                else { continue }   // being created
                // tcbhead_t.dtv (second word): points one dtv_t into its calloc'ed block; freed at join.
                let dtv = state == .unjoined ? remote.word(d + 8) ?? 0 : 0
                out.append(ExitedThread(descriptor: d, start: b.start, end: b.end, state: state, heapBlock: dtv))
            }
        }
        return out
    }
}
