import Glibc
import HeapModel
import ProcessAccess

/// What heapscope knows about the target's glibc before stopping it (from /proc and symbols).
public struct GlibcTarget: Sendable {
    public var pid: Int32
    public var maps: [Mapping]
    public var layout: GlibcLayout
    /// Writable data of the module that holds malloc (libc.so, or the executable if static), incl. .bss tail.
    public var dataRanges: [Segment]
    /// From symbols, when available.
    public var mainArenaSymbol: UInt64?
    public var mpSymbol: UInt64?
    /// Offsets of the TLS variables `tcache` and `thread_arena` inside libc's TLS block (symbols only).
    public var tcacheTLSOffset: UInt64?
    public var threadArenaTLSOffset: UInt64?
    /// Code ranges of malloc's functions: a thread stopped inside one may be mid-update.
    public var mallocFunctions: [(start: UInt64, end: UInt64, name: String)]
    public var symbolSource: String
    /// Where the target's memory is read: the live process, or a core file.
    public var remote: RemoteMemory
    public init(pid: Int32, maps: [Mapping], layout: GlibcLayout, dataRanges: [Segment], mainArenaSymbol: UInt64?,
                mpSymbol: UInt64?, tcacheTLSOffset: UInt64?, threadArenaTLSOffset: UInt64?,
                mallocFunctions: [(start: UInt64, end: UInt64, name: String)], symbolSource: String, remote: RemoteMemory? = nil) {
        self.remote = remote ?? RemoteMemory(pid: pid)
        self.pid = pid; self.maps = maps; self.layout = layout; self.dataRanges = dataRanges
        self.mainArenaSymbol = mainArenaSymbol; self.mpSymbol = mpSymbol; self.tcacheTLSOffset = tcacheTLSOffset
        self.threadArenaTLSOffset = threadArenaTLSOffset; self.mallocFunctions = mallocFunctions; self.symbolSource = symbolSource
    }
}

/// A heap segment to walk: [start, end) of chunks, owned by arena `arena` (index).
public struct HeapSegment: Sendable {
    public var firstChunk: UInt64
    public var end: UInt64          // walk limit
    public var arena: Int
    public var mapped: Segment      // the whole segment as the allocator sees it
}

/// Memory and facts copied while the target was stopped; everything after this runs detached.
public final class GlibcCapture: @unchecked Sendable {
    public let target: GlibcTarget
    public let image = MemoryImage()
    public internal(set) var mainArena: UInt64 = 0
    public internal(set) var mp: UInt64 = 0
    public internal(set) var arenas: [UInt64] = []
    public internal(set) var segments: [HeapSegment] = []
    public internal(set) var heapMax: UInt64 = 64 << 20
    public internal(set) var mmappedChunks: [(address: UInt64, size: UInt64, lead: UInt64)] = []
    public internal(set) var threads: [StoppedThread] = []
    /// Where every thread's tcache pointer lives: this many bytes below its thread pointer.
    var tcacheDelta: UInt64? = nil
    public internal(set) var unsettled: [String] = []
    public internal(set) var warnings: [HeapWarning] = []
    public internal(set) var discovery: String = ""
    public internal(set) var heapBytesCopied = 0
    /// Exited threads whose stacks are still mapped (nil: descriptors of this glibc not known).
    public internal(set) var exited: [ExitedThread]?
    /// Non-contiguous main arena: mappings holding its mmap'd regions, split into regions after
    /// detaching (see `resolveMainRegions`).
    public internal(set) var mainRegionMappings: [Segment] = []
    /// Which pages of libc's data hold anything (nil: all are read).
    var residency: PageSource? = nil

    public init(target: GlibcTarget) { self.target = target }
}

public enum GlibcError: Error, CustomStringConvertible, Sendable {
    case mainArenaNotFound(String)
    case notInitialised
    case unsupportedVersion(String)
    case notGlibc(String)
    public var description: String {
        switch self {
        case .mainArenaNotFound(let why): return "could not find glibc's main_arena: \(why)"
        case .notInitialised: return "glibc malloc is not initialised in the target yet (no allocation has been made)"
        case .unsupportedVersion(let v): return "glibc \(v) is not supported (heapscope knows \(GlibcLayout.supported))"
        case .notGlibc(let why): return "target does not use glibc malloc: \(why)"
        }
    }
}

extension GlibcCapture {
    /// Runs with every thread stopped. Reads only. Small dependent reads first (arenas, heap_info
    /// chains, mmapped headers), then one bulk copy of the heap segments.
    /// Bytes the heap copy will need, estimated from /proc/PID/maps before stopping the target:
    /// [heap] and every 64 MiB-aligned anonymous rw mapping (non-main heaps), plus slack.
    public static func estimateCopyBytes(_ t: GlibcTarget) -> Int {
        var n: UInt64 = 0
        for m in t.maps where isHeapMapping(m) { n += m.size }
        return Int(n + n / 16 + (1 << 20))
    }

    /// What `estimateCopyBytes` counts as heap: [heap], and anonymous mappings at 64 MiB
    /// boundaries (non-main heaps).
    public static func isHeapMapping(_ m: Mapping) -> Bool {
        m.readable && m.writable && !m.shared && (m.path == "[heap]" || (m.isAnonymous && m.start & ((64 << 20) - 1) == 0))
    }

    /// With `budget`, each step checks it and the capture ends early once it is exceeded
    /// (the caller detaches and reports; nothing copied then is used).
    /// `mmappedFrom`: where to find the mmapped chunks now (the live process's pages, made before
    /// the stop); nil leaves the scan for after the detach (`scanMmapped(from:)` on a copy of
    /// every resident anonymous page, which the caller makes in the same pause).
    public func captureHeap(threads: [StoppedThread], pool: BufferPool? = nil, budget: StopBudget? = nil,
                            mmappedFrom pages: PageSource?) throws(GlibcError) {
        self.threads = threads
        let trace = PhaseTrace()
        defer { trace.done("capture total") }
        let L = target.layout
        let remote = target.remote
        let copier = BulkCopier(remote: remote, pool: pool, budget: budget)
        func outOfTime() -> Bool { budget?.check() == true }

        // 1. The allocator's own data (main_arena, mp_ live here).
        // Only the pages in memory (or swapped): the others were never written (the .bss tail)
        // or hold the file's bytes untouched; reading them would map them into the target.
        var dataRequests: [BulkCopier.Request] = []
        for r in target.dataRanges {
            let runs = residency?.residentRuns(start: r.start & ~4095, end: (r.end + 4095) & ~4095, prefetch: r.end) ?? [(r.start, r.end)]
            for run in runs {
                let s = max(run.start, r.start), e = min(run.end, r.end)
                if e > s { dataRequests.append(.init(start: s, count: Int(e - s), label: "malloc data")) }
            }
        }
        copier.copy(dataRequests, into: image)

        trace.mark("copy malloc data")
        // 2. main_arena and mp_.
        try locateRoots(remote: remote)
        trace.mark("locate main_arena/mp_")

        // 3. The arena ring.
        arenas = [mainArena]
        var seen: Set<UInt64> = [mainArena]
        var a = remote.word(mainArena + L.arenaNext) ?? mainArena
        while a != mainArena, arenas.count < 4096 {
            if seen.contains(a) { warnings.append(.init(.corruptList, a, "arena ring loops back to 0x\(hex(a)) without reaching main_arena")); break }
            guard a & 7 == 0, remote.word(a) != nil else {
                warnings.append(.init(.corruptList, a, "arena ring points to unreadable 0x\(hex(a))")); break
            }
            seen.insert(a); arenas.append(a)
            a = remote.word(a + L.arenaNext) ?? mainArena
        }
        // Copy each non-main arena struct now (it is also inside its first heap).
        copier.copy(arenas.dropFirst().map { .init(start: $0, count: Int(L.arenaSize), label: "arena") }, into: image)

        for (i, ar) in arenas.enumerated() {
            if let m = remote.word(ar + L.arenaMutex), UInt32(truncatingIfNeeded: m) != 0 {
                unsettled.append("arena \(i) (0x\(hex(ar))) mutex is held")
            }
        }
        for t in threads {
            if let f = target.mallocFunctions.first(where: { t.pc >= $0.start && t.pc < $0.end }) {
                unsettled.append("thread \(t.tid) is stopped inside \(f.name)")
            }
        }

        trace.mark("arena ring")
        if outOfTime() { return }
        // 4. Heap segments.
        var copyRequests: [BulkCopier.Request] = []
        if let hp = L.mpHpPagesize, (35...41).contains(L.minor), let v = remote.word(mp + hp), v != 0 {
            // (a huge page size: 2 MiB or 1 GiB; anything else is a corrupted mp_)
            if v & (v - 1) == 0, v >= 4096, v <= 1 << 30 { heapMax = 4 * v }
            else { warnings.append(.init(.corruptArena, mp + hp, "mp_.hp_pagesize is 0x\(hex(v)), not a page size")) }
        }
        segments = []
        mainSegments(remote: remote, requests: &copyRequests)
        for (i, ar) in arenas.enumerated() where i > 0 {
            nonMainSegments(index: i, arena: ar, remote: remote, requests: &copyRequests)
        }

        trace.mark("heap segments")
        if outOfTime() { return }
        // 5. mmapped chunks (headers only).
        if let pages {
            scanMmapped(from: pages)
            trace.mark("mmapped scan")
        }
        if outOfTime() { return }

        // 6. Thread TLS windows, to find where each thread's tcache pointer lives: the same offset
        // below every thread pointer (static TLS). A sample of threads gives the offset; the
        // other threads need only that word (a process with 10,000 threads copies 16 bytes of
        // each, not 16 KiB).
        let withTP = threads.filter { $0.fsBase != 0 }
        let sample = GlibcCapture.sample(withTP, mainTid: target.pid, count: 16)
        for t in sample {
            let lo = t.fsBase >= 0x4000 ? t.fsBase - 0x4000 : 0
            let hi = t.fsBase + 0x100
            for m in maps(overlapping: lo, hi) where m.readable {
                let s = max(m.start, lo), e = min(m.end, hi)
                if image.region(containing: s, length: e - s) == nil {
                    // (the pages in memory: the window reaches below the TLS into stack never used)
                    // (asked in whole pages: a source may round a partial page away)
                    let runs = residency?.residentRuns(start: s & ~4095, end: (e + 4095) & ~4095, prefetch: e) ?? [(s, e)]
                    for r in runs {
                        let rs = max(r.start, s), re = min(r.end, e)
                        if re > rs { copyRequests.append(.init(start: rs, count: Int(re - rs), label: "tls")) }
                    }
                }
            }
        }
        // 7. Bulk copy.
        trace.mark("tls windows")
        var failures = copier.copy(copyRequests, into: image)
        trace.mark("bulk copy")
        if outOfTime() { return }
        if let pool { trace.note("buffer pool \(pool.capacity >> 20) MiB, \(pool.usedBytes >> 20) MiB used") }
        // 7b. The tcache word of every other thread, at the offset the sample shows.
        tcacheDelta = findTcacheDelta(sample)
        if let d = tcacheDelta, withTP.count > sample.count {
            let sampled = Set(sample.map(\.tid))
            let words = withTP.filter { !sampled.contains($0.tid) && $0.fsBase >= d }.map { $0.fsBase - d }.sorted()
            failures += copier.copy(words.map { .init(start: $0, count: 8, label: "tls") }, into: image)
            trace.mark("tcache words")
        }
        for (r, got) in failures {
            warnings.append(.init(.unreadable, r.start, "could only copy \(got) of \(r.count) bytes of \(r.label) at 0x\(hex(r.start))"))
        }
        heapBytesCopied = copyRequests.reduce(0) { $0 + $1.count }
        // 8. Exited threads' stacks (a few words per anonymous mapping above a guard page).
        exited = exitedThreads(remote: remote)
        trace.mark("exited threads")
    }

    private func mainSegments(remote: RemoteMemory, requests: inout [BulkCopier.Request]) {
        let L = target.layout
        var sbrk = remote.word(mp + L.mpSbrkBase) ?? 0
        let top = remote.word(mainArena + L.arenaTop) ?? 0
        let flags = UInt32(truncatingIfNeeded: remote.word(mainArena + L.arenaFlags) ?? 0)
        guard sbrk != 0, top != 0 else { return }
        // Nothing read from the target is used before it is checked against the mappings.
        guard let topMap = mapping(containing: top), top <= topMap.end &- 16 else {
            warnings.append(.init(.corruptArena, mainArena, "main arena top 0x\(hex(top)) is not in a mapping")); return
        }
        if mapping(containing: sbrk) == nil {
            // mp_.sbrk_base overwritten: the brk heap is [heap] when top lies in it.
            let heap = topMap.path == "[heap]" ? topMap.start : nil
            warnings.append(.init(.corruptArena, mp + L.mpSbrkBase, "mp_.sbrk_base 0x\(hex(sbrk)) is not in a mapping" +
                                  (heap.map { "; the main heap is taken to start at [heap] 0x\(hex($0))" } ?? "")))
            guard let h = heap else { return }
            sbrk = h
        }
        var topSize = (remote.word(top + 8) ?? 0) & ~7
        if topSize > topMap.end - top {
            warnings.append(.init(.corruptArena, top, "main arena top chunk 0x\(hex(top)) has size 0x\(hex(topSize)), past the end of its mapping 0x\(hex(topMap.end))"))
            topSize = topMap.end - top
        }
        let first = (sbrk + L.alignMask + L.headerSize) & ~L.alignMask - L.headerSize
        if flags & L.noncontiguousBit == 0 || (top >= sbrk && topMap.contains(sbrk)) {
            guard top >= first, topMap.contains(first) else {
                warnings.append(.init(.corruptArena, top, "main arena top 0x\(hex(top)) and sbrk_base 0x\(hex(sbrk)) are not in one heap"))
                return
            }
            segments.append(HeapSegment(firstChunk: first, end: top + 16, arena: 0,
                                        mapped: Segment(start: sbrk, end: top + topSize)))
            requests.append(.init(start: first, count: Int(top + 16 - first), label: "main heap"))
        } else {
            // Non-contiguous main arena (brk failed or was moved): the brk part ends in a double
            // fencepost; the rest lives in mmap'd regions of >= 1 MiB that may have merged with
            // each other or with neighbours. Copy every anonymous mapping that holds top or a
            // chunk named by a main-arena bin; split them into regions after detaching.
            if let m = mapping(containing: sbrk) {
                segments.append(HeapSegment(firstChunk: first, end: m.end, arena: 0, mapped: Segment(start: sbrk, end: m.end)))
                requests.append(.init(start: first, count: Int(m.end - first), label: "main heap (brk)"))
            }
            var hints: [UInt64] = [top]
            for i in 0..<L.nFastbins { if let c = image.word(mainArena + L.arenaFastbins + UInt64(8 * i)), c != 0 { hints.append(c) } }
            for i in 1..<L.nBins {
                let b = L.binAt(mainArena, i)
                for off: UInt64 in [16, 24] { if let c = image.word(b + off), c != b { hints.append(c) } }
            }
            var chosen: [Mapping] = []
            for h in hints {
                guard let m = mapping(containing: h), m.writable, m.isAnonymous, !m.contains(sbrk),
                      !chosen.contains(m) else { continue }
                chosen.append(m)
            }
            for m in chosen.sorted(by: { $0.start < $1.start }) {
                mainRegionMappings.append(Segment(start: m.start, end: m.end))
                requests.append(.init(start: m.start, count: Int(m.size), label: "main heap (mmap)"))
            }
        }
    }

    private func nonMainSegments(index: Int, arena ar: UInt64, remote: RemoteMemory, requests: inout [BulkCopier.Request]) {
        let L = target.layout
        guard let top = remote.word(ar + L.arenaTop), top != 0 else { return }
        var h = top & ~(heapMax - 1)
        var seen: Set<UInt64> = []
        var segs: [HeapSegment] = []
        while h != 0 {
            if seen.contains(h) || seen.count > 100_000 {
                warnings.append(.init(.listCycle, h, "heap_info chain of arena \(index) loops at 0x\(hex(h))")); break
            }
            seen.insert(h)
            guard let owner = remote.word(h), let prev = remote.word(h + L.heapInfoPrev),
                  let size = remote.word(h + L.heapInfoSizeOffset) else {
                warnings.append(.init(.unreadable, h, "heap_info of arena \(index) at 0x\(hex(h)) is unreadable")); break
            }
            guard owner == ar, size >= L.heapInfoSize, size <= heapMax else {
                warnings.append(.init(.corruptList, h, "heap_info at 0x\(hex(h)) names arena 0x\(hex(owner)) with size 0x\(hex(size)), expected arena \(index)"))
                break
            }
            let first = (ar == h + L.heapInfoSize) ? L.firstChunkInFirstHeap(h) : h + L.heapInfoSize
            let containsTop = top >= h && top < h + size
            let end = containsTop ? top + 16 : h + size
            segs.append(HeapSegment(firstChunk: first, end: end, arena: index, mapped: Segment(start: h, end: h + size)))
            requests.append(.init(start: h, count: Int(end - h), label: "arena \(index) heap"))
            h = prev
        }
        segments.append(contentsOf: segs.reversed())
    }

    /// The mapping holding `a` (binary search: target.maps is in address order).
    func mapping(containing a: UInt64) -> Mapping? { target.maps.mapping(containing: a) }

    /// Index of the first mapping whose end is past `a`.
    func firstMapping(endingAfter a: UInt64) -> Int {
        var lo = 0, hi = target.maps.count
        while lo < hi { let mid = (lo + hi) / 2; if target.maps[mid].end <= a { lo = mid + 1 } else { hi = mid } }
        return lo
    }

    /// The mappings that overlap [lo, hi).
    func maps(overlapping lo: UInt64, _ hi: UInt64) -> ArraySlice<Mapping> {
        var i = firstMapping(endingAfter: lo), j = i
        while j < target.maps.count && target.maps[j].start < hi { j += 1 }
        if i > j { i = j }
        return target.maps[i..<j]
    }

    /// Up to `count` threads spread over `threads`, the main thread first.
    static func sample(_ threads: [StoppedThread], mainTid: Int32, count: Int) -> [StoppedThread] {
        if threads.count <= count { return threads }
        var out = threads.filter { $0.tid == mainTid }
        let step = Double(threads.count) / Double(count - out.count)
        var x = 0.0
        while out.count < count && Int(x) < threads.count {
            if threads[Int(x)].tid != mainTid { out.append(threads[Int(x)]) }
            x += step
        }
        return out
    }

    /// Find mmapped chunks in anonymous rw mappings outside the arenas' heaps, header by header.
    /// Find mmapped chunks through `source`: the live process while stopped, or, after the
    /// detach, a copy that holds every resident page of the anonymous mappings (see `capture`'s
    /// `mmappedFrom`).
    public func scanMmapped(from source: PageSource) {
        let L = target.layout
        let page: UInt64 = 4096
        var excluded = segments.map { $0.mapped }
        excluded.append(contentsOf: target.dataRanges)
        excluded.append(contentsOf: mainRegionMappings)
        var headers = [UInt64](repeating: 0, count: 2 * 64)
        // A live thread's stack holds no mmapped chunk below its descriptor (at the thread
        // pointer, the top of glibc's stack mapping): only what the kernel merged above it is scanned.
        let stacks = threads.filter { $0.fsBase != 0 }.map { (tp: $0.fsBase, sp: $0.stackPointer) }.sorted { $0.tp < $1.tp }
        func scanFrom(_ m: Mapping) -> UInt64 {
            var lo = 0, hi = stacks.count
            while lo < hi { let mid = (lo + hi) / 2; if stacks[mid].tp < m.start { lo = mid + 1 } else { hi = mid } }
            var from = m.start
            while lo < stacks.count && stacks[lo].tp < m.end {
                if m.contains(stacks[lo].sp) && stacks[lo].sp < stacks[lo].tp { from = max(from, (stacks[lo].tp + 0x1000 + page - 1) & ~(page - 1)) }
                lo += 1
            }
            return from
        }
        var ahead = 0   // the last mapping that starts within 256 MiB of the current one
        for (mi, m) in target.maps.enumerated() where m.readable && m.writable && !m.shared && (m.isAnonymous || m.path == "[heap]") {
            while ahead + 1 < target.maps.count && target.maps[ahead + 1].start < m.start &+ min(256 << 20, UInt64.max - m.start) { ahead += 1 }
            if ahead < mi { ahead = mi }
            // Pieces of this mapping not covered by a heap segment.
            let from = scanFrom(m)
            if from >= m.end { continue }
            var pieces = [Segment(start: from, end: m.end)]
            for ex in excluded {
                pieces = pieces.flatMap { p -> [Segment] in
                    if ex.end <= p.start || ex.start >= p.end { return [p] }
                    var out: [Segment] = []
                    if ex.start > p.start { out.append(Segment(start: p.start, end: ex.start & ~(page - 1))) }
                    if ex.end < p.end { out.append(Segment(start: (ex.end + page - 1) & ~(page - 1), end: p.end)) }
                    return out.filter { $0.end > $0.start }
                }
            }
            for piece in pieces {
                // Page headers of the resident pages only (a chunk header was written, so its page
                // is resident), read in batches; a chunk found skips its whole length. Residency
                // comes from pagemap, streamed: 8 bytes per page of the piece, no per-page array.
                let runs = source.residentRuns(start: piece.start, end: piece.end, prefetch: target.maps[ahead].end)
                    ?? [(start: piece.start, end: piece.end)]
                func resident(_ a: UInt64) -> Bool {
                    var lo = 0, hi = runs.count
                    while lo < hi { let mid = (lo + hi) / 2; if runs[mid].end <= a { lo = mid + 1 } else { hi = mid } }
                    return lo < runs.count && runs[lo].start <= a
                }
                var next = piece.start   // no chunk can start below this (inside one found already)
                for run in runs {
                    var p = max(run.start, next)
                    while p < run.end {
                        let pages = Int(min(64, (run.end - p) / page))
                        if pages == 0 { break }
                        let got = headers.withUnsafeMutableBytes {
                            source.gather(start: p, stride: page, count: pages, each: 16, into: $0.baseAddress!)
                        }
                        if got == 0 { p += page; continue }
                        var advanced = p + UInt64(got) * page
                        for k in 0..<got {
                            let at = p + UInt64(k) * page
                            let prevSize = headers[2 * k], sizeField = headers[2 * k + 1]
                            let size = sizeField & ~7, mapSize = size &+ L.mmappedTrailer
                            guard sizeField & 7 == L.isMmapped, prevSize == 0, mapSize >= page, mapSize % page == 0,
                                  mapSize >= size, at &+ mapSize <= piece.end, at &+ mapSize > at else { continue }
                            var chunk = at, chunkSize = size
                            if let real = memalignedHeader(source: source, mapping: at, mapSize: mapSize, resident: resident) {
                                chunk = real.0; chunkSize = real.1
                            }
                            mmappedChunks.append((chunk, chunkSize, chunk - at))
                            advanced = at + mapSize
                            break
                        }
                        p = advanced
                    }
                    next = max(next, p)
                }
            }
        }
    }

    /// memalign'd mmapped chunk: a stale header (0, mapsize|2) at the mapping start, the real header
    /// further on, whose prev_size equals its offset from the mapping start. Lead areas are zero, and
    /// pages that are not resident are zero too, so only resident pages are read.
    private func memalignedHeader(source: PageSource, mapping p: UInt64, mapSize: UInt64, resident: (UInt64) -> Bool) -> (UInt64, UInt64)? {
        let limit = min(mapSize - 32, 1 << 20)     // alignments up to 1 MiB
        var off: UInt64 = 16
        var buf = [UInt64](repeating: 0, count: 512)   // one page
        while off < limit {
            if !resident(p + off) {
                off = (off / 4096 + 1) * 4096
                continue
            }
            let want = Int(min(4096 - off % 4096, limit - off))
            let n = buf.withUnsafeMutableBytes { source.read(p + off, into: $0.baseAddress!, count: want) }
            if n < 8 { return nil }
            for k in 0..<(n / 8) where buf[k] != 0 {
                let at = p + off + UInt64(k * 8)
                let lead = at - p
                guard at & 15 == 0, buf[k] == lead else { return nil }
                var next: UInt64 = 0
                let sizeField = k + 1 < n / 8 ? buf[k + 1] : (withUnsafeMutableBytes(of: &next) { source.read(at + 8, into: $0.baseAddress!, count: 8) } == 8 ? next : 0)
                let size = sizeField & ~7
                return (sizeField & 7 == 2 && lead &+ size &+ target.layout.mmappedTrailer == mapSize) ? (at, size) : nil
            }
            off += UInt64(n)
        }
        return nil
    }
}


@inline(__always) func hex(_ v: UInt64) -> String { String(v, radix: 16) }

extension GlibcCapture {
    /// malloc's own data outside its heaps, never a root of a leak check: every arena struct
    /// (the main one lives in libc's .data) and `mp_`.
    public var metadataRanges: [(start: UInt64, end: UInt64)] {
        let L = target.layout
        var out = arenas.map { (start: $0, end: $0 + L.arenaSize) }
        if mp != 0 { out.append((mp, mp + L.mpSize)) }
        return out
    }
}
