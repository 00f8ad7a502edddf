import HeapModel
import ProcessAccess

/// Threads that exited but whose stacks glibc still keeps mapped.
///
/// glibc (NPTL) allocates each thread's stack with mmap — guard page at the bottom, the thread
/// descriptor (`struct pthread`, what pthread_self() returns) at the top — and keeps it after the
/// thread exits: until pthread_join for a joinable thread, and afterwards in its stack cache
/// (up to 40 MiB) for reuse. A descriptor is recognised by its TCB header (`tcb` and `self` both
/// point to it); a live thread's thread pointer (fs_base) is its descriptor. What happened to an
/// exited one is in its fields (measured on glibc 2.36, x86_64; the field offsets are the same in
/// 2.31, 2.41, 2.43 and 2.44, measured with gdb in the test matrix's Debian roots; used for 2.31,
/// 2.36 and 2.41):
///
///   unjoined: tid == 0 (cleared by the kernel at exit), cancelhandling has EXITING (0x10) and not
///             TERMINATED (0x20)
///   cached:   tid == -1 (pthread_join marks it), or TERMINATED set (a detached thread freed itself)
struct NPTLLayout {
    let tid: UInt64 = 0x2d0
    let cancelHandling: UInt64 = 0x308
    let stackBlock: UInt64 = 0x690
    let stackBlockSize: UInt64 = 0x698
    static let exiting: UInt64 = 0x10, terminated: UInt64 = 0x20

    /// Versions whose struct pthread was measured (gdb `ptype /o struct pthread` with libc6-dbg):
    /// the exact versions, not a range inferred from the layout (their neighbours are not known).
    /// (2.43 and 2.44 have the same offsets, but their thread stacks have no guard-page mapping of
    /// their own: guard pages are made with madvise, the stacks merge into one mapping, and the
    /// search by mapping below does not find them yet.)
    static let measured: Set<Int> = [31, 36, 41]
    init?(_ layout: GlibcLayout) {
        guard layout.major == 2, layout.inferredRange == nil || layout.inferredRange == layout.version,
              NPTLLayout.measured.contains(layout.minor) else { return nil }
    }
}

extension GlibcCapture {
    /// Runs with the target stopped. Candidates are anonymous read-write mappings just above an
    /// inaccessible guard mapping; the descriptor's distance from the top of its stack is the same
    /// for every thread of a process, learned from a live thread or, failing that, by scanning the
    /// top 64 KiB of a candidate. nil: this glibc's descriptors are not known.
    func exitedThreads(remote: RemoteMemory) -> [ExitedThread]? {
        guard let N = NPTLLayout(target.layout) else { return nil }
        let maps = target.maps
        let live = threads.map(\.fsBase).sorted()
        /// The live thread pointer inside `m`, if any (binary search).
        func liveThread(in m: Mapping) -> UInt64? {
            var lo = 0, hi = live.count
            while lo < hi { let mid = (lo + hi) / 2; if live[mid] < m.start { lo = mid + 1 } else { hi = mid } }
            return lo < live.count && live[lo] < m.end ? live[lo] : nil
        }
        var candidates: [(guardStart: UInt64, stack: Mapping)] = []
        for (i, m) in maps.enumerated() where i > 0 && m.isAnonymous && m.readable && m.writable && !m.shared {
            let g = maps[i - 1]
            if g.end == m.start && g.isAnonymous && !g.readable && !g.writable { candidates.append((g.start, m)) }
        }
        func isDescriptor(_ pd: UInt64) -> Bool { remote.word(pd) == pd && remote.word(pd + 16) == pd }
        // The distance from the top of a stack mapping to its descriptor is the same for every
        // thread: learned from the first live thread whose stack it is. Reads happen in the
        // pause; live threads' stacks are not read further.
        var distances: [UInt64] = []
        var exitedCandidates: [(guardStart: UInt64, stack: Mapping)] = []
        for c in candidates {
            guard let t = liveThread(in: c.stack) else { exitedCandidates.append(c); continue }
            if distances.isEmpty && isDescriptor(t) { distances.append(c.stack.end - t) }
        }
        var scans = 0
        var out: [ExitedThread] = []
        for c in exitedCandidates {
            var pd = distances.lazy.map { c.stack.end - $0 }.first { c.stack.contains($0) && isDescriptor($0) }
            if pd == nil && scans < 32 {
                // Scan the top of the mapping for a descriptor (64-byte aligned, as glibc aligns it).
                scans += 1
                let lo = max(c.stack.start, c.stack.end - (64 << 10))
                if let bytes = remote.bytes(lo, count: Int(c.stack.end - lo)) {
                    bytes.withUnsafeBytes { p in
                        var o = (bytes.count - 64) & ~63
                        while o >= 0 {
                            let a = lo + UInt64(o)
                            if o + 24 <= p.count, p.load(fromByteOffset: o, as: UInt64.self) == a,
                               p.load(fromByteOffset: o + 16, as: UInt64.self) == a { pd = a; break }
                            o -= 64
                        }
                    }
                }
                if let d = pd, !distances.contains(c.stack.end - d) { distances.append(c.stack.end - d) }
            }
            guard let d = pd, let tidWord = remote.word(d + N.tid),
                  let cancel = remote.word(d + N.cancelHandling) else { continue }
            let tid = Int32(truncatingIfNeeded: tidWord), flags = cancel & 0xffff_ffff
            let state: ExitedThread.State
            if tid == 0 && flags & NPTLLayout.exiting != 0 && flags & NPTLLayout.terminated == 0 { state = .unjoined }
            else if tid == -1 || (tid == 0 && flags & NPTLLayout.terminated != 0) { state = .cached }
            else { continue }   // being created, or not a descriptor after all
            // The mapping as glibc made it: stackblock .. + stackblock_size when that agrees with the maps.
            var start = c.guardStart, end = c.stack.end
            if let b = remote.word(d + N.stackBlock), let n = remote.word(d + N.stackBlockSize),
               b == c.guardStart, b &+ n >= c.stack.end, b &+ n > d { start = b; end = b + n }
            // tcbhead_t.dtv (second word): points one dtv_t into its calloc'ed block; freed at join.
            let dtv = state == .unjoined ? remote.word(d + 8) ?? 0 : 0
            out.append(ExitedThread(descriptor: d, start: start, end: end, state: state, heapBlock: dtv))
        }
        return out
    }
}
