import Allocator
import HeapModel
import ProcessAccess
import Symbols

/// What the RSS account reads of a live process before it is stopped: /proc/PID/smaps, the
/// present pages of its private anonymous mappings (/proc/PID/pagemap), and its modules'
/// writable data (to name anonymous memory by the variables that point into it). Nothing of it
/// is read during the stop or after the detach.
struct ResidencyRead {
    var smaps: [SmapsEntry]
    /// Present pages of every private anonymous mapping, in address order (empty without pagemap).
    var present: [(start: UInt64, end: UInt64)]
    var pageLevel: Bool
    /// Module .data and .bss, as read (their present pages; none without pagemap).
    var moduleData: [(start: UInt64, bytes: [UInt8])]

    /// At most this much module data is read for naming.
    static let moduleDataLimit = 32 << 20

    static func read(pid: Int32, remote: RemoteMemory) -> ResidencyRead? {
        guard let smaps = try? ProcFS.smaps(pid: pid), !smaps.isEmpty else { return nil }
        var present: [(start: UInt64, end: UInt64)] = []
        var pageLevel = false
        let maps = smaps.map(\.mapping)
        var data: [(start: UInt64, bytes: [UInt8])] = []
        if let pm = Pagemap(pid: pid), pm.exact {
            pageLevel = true
            let anon = maps.indices.filter { !maps[$0].shared && (maps[$0].isAnonymous || maps[$0].path == "[heap]" || maps[$0].path == "[stack]") }
            for (n, i) in anon.enumerated() {
                let m = maps[i]
                let ahead = n + 1 < anon.count ? maps[anon[min(n + 64, anon.count - 1)]].end : m.end
                guard smaps[i].rss > 0, let runs = pm.residentRuns(start: m.start, end: m.end, prefetch: ahead, presentOnly: true) else { continue }
                present.append(contentsOf: runs)
            }
            // Module .data and .bss: their present pages only (reading any other page would
            // fault it into the target: the zero page, or the file's page).
            var total = 0
            for (previous, m) in zip([nil] + maps.map { Optional($0) }, maps) where m.readable && m.writable && !m.shared {
                guard m.path.hasPrefix("/") || m.isBSSTail(after: previous) else { continue }
                for r in pm.residentRuns(start: m.start, end: m.end, presentOnly: true) ?? [] where total + Int(r.end - r.start) <= moduleDataLimit {
                    var bytes = [UInt8](repeating: 0, count: Int(r.end - r.start))
                    let n = bytes.withUnsafeMutableBytes { remote.read(r.start, into: $0.baseAddress!, count: $0.count) }
                    guard n > 0 else { continue }
                    bytes.removeLast(bytes.count - n)
                    data.append((r.start, bytes))
                    total += n
                }
            }
        }
        return ResidencyRead(smaps: smaps, present: present, pageLevel: pageLevel, moduleData: data)
    }
}

enum MemoryAccounting {
    /// The account of `read` against the heap walked from the same process: every mapping's RSS
    /// goes to one line, or (anonymous mappings, page by page) to several.
    static func build(_ read: ResidencyRead, walk: HeapWalk,
                      threads: [StoppedThread], symbols: SymbolSession, heapImage: MemoryImage) -> MemoryAccount {
        let chunks = walk.chunks
        let own = Set(chunks.kinds.ownMappingKinds)
        // Chunks mapped on their own (as ranges of whole pages), and thread stacks below.
        var mapped: [(start: UInt64, end: UInt64)] = []
        var stackRanges = Set<UInt64>()   // starts of the ranges of `mapped` that are stacks
        var isOwn = [Bool](repeating: false, count: 256)
        for k in own { isOwn[Int(k.rawValue)] = true }
        let address = chunks.address.reader, size = chunks.size.reader   // (chunks is held, unchanged)
        for i in 0..<chunks.count where isOwn[Int(chunks.kind[i].rawValue)] {
            let a = address.address(i), e = a &+ size.size(i)
            mapped.append((a & ~4095, (e + 4095) & ~4095))
        }
        // The heap chunks, in address order: the table's own order (the walk makes it sorted),
        // passing over the chunks mapped on their own.
        struct HeapChunks {
            let table: ChunkTable, address: AddressColumn.Reader, size: SizeColumn.Reader, isOwn: [Bool]
            var count: Int { table.count }
            @inline(__always) func start(_ j: Int) -> UInt64 { address.address(j) }
            @inline(__always) func end(_ j: Int) -> UInt64 { address.address(j) &+ size.size(j) }
            @inline(__always) func state(_ j: Int) -> ChunkState { table.state(j) }
            /// Past chunks mapped on their own.
            @inline(__always) func skipOwn(_ j: inout Int) { while j < count && isOwn[Int(table.kind[j].rawValue)] { j += 1 } }
            /// Back to the previous heap chunk, if any, over chunks mapped on their own.
            @inline(__always) func previous(_ j: Int) -> Int? {
                var k = j - 1
                while k >= 0 && isOwn[Int(table.kind[k].rawValue)] { k -= 1 }
                return k >= 0 ? k : nil
            }
        }
        let heap = HeapChunks(table: chunks, address: address, size: size, isOwn: isOwn)
        // The arenas' heap segments (what of them no chunk covers is malloc's own: a thread heap's
        // header and arena struct); other anonymous memory may sit in the same mapping.
        let segments = walk.arenas.flatMap { $0.segments }.map { ($0.start, $0.end) }.sorted { $0.0 < $1.0 }
        func inSegment(_ a: UInt64) -> UInt64? {   // the end of the segment holding a
            var l = 0, h = segments.count
            while l < h { let mid = (l + h) / 2; if segments[mid].1 <= a { l = mid + 1 } else { h = mid } }
            return l < segments.count && segments[l].0 <= a ? segments[l].1 : nil
        }
        func nextSegmentStart(after a: UInt64) -> UInt64? {
            var l = 0, h = segments.count
            while l < h { let mid = (l + h) / 2; if segments[mid].0 <= a { l = mid + 1 } else { h = mid } }
            return l < segments.count ? segments[l].0 : nil
        }
        func isHeapMapping(_ m: Mapping) -> Bool { segments.contains { $0.0 < m.end && $0.1 > m.start } }
        let sps = threads.map(\.stackPointer)
        // Thread stacks inside anonymous mappings (which the kernel merges with neighbours of the
        // same protection, a pool mapped just above a stack, say): from the mapping's start (above
        // the guard page) to the end of the block glibc mapped, the page after the thread's
        // descriptor (at the thread pointer; struct pthread is smaller than a page).
        let smapsMaps = read.smaps.map(\.mapping)
        for t in threads {
            guard let m = smapsMaps.first(where: { $0.contains(t.stackPointer) }), m.path.isEmpty else { continue }
            let end = m.contains(t.fsBase) && t.fsBase > t.stackPointer ? min(m.end, (t.fsBase + 4096) & ~4095) : m.end
            mapped.append((m.start, end))
            stackRanges.insert(m.start)
        }
        mapped.sort { $0.start < $1.start }

        var lines: [String: MemoryAccount.Line] = [:]
        var order: [String] = []
        func add(_ key: String, _ id: String, _ name: String, rss: Int64, pss: Int64, swap: Int64, mapping: Bool = true) {
            if lines[key] == nil { lines[key] = .init(id: id, name: name, rss: 0, pss: 0, swap: 0, mappings: 0); order.append(key) }
            lines[key]!.rss += rss; lines[key]!.pss += pss; lines[key]!.swap += swap
            if mapping { lines[key]!.mappings += 1 }
        }
        let names = ["malloc_in_use", "malloc_free", "malloc_top", "malloc_metadata", "mmapped_chunks", "thread_stacks",
                     "anonymous", "shared", "file_backed", "unexplained"].map { ($0, MemoryAccount.plainName($0)) }
        for (id, name) in names { lines[id] = .init(id: id, name: name, rss: 0, pss: 0, swap: 0, mappings: 0); order.append(id) }

        /// Where a whole mapping goes, or that it is counted page by page (or is a candidate for
        /// naming, without page-level residency).
        enum Whole { case line(String), mallocHeap, candidate, pages }
        func whole(_ n: Int) -> Whole {
            let m = read.smaps[n].mapping, previous = n > 0 ? read.smaps[n - 1].mapping : nil
            if m.shared { return .line("shared") }
            let anonymous = m.isAnonymous || m.path == "[heap]" || m.path == "[stack]"
            // A module's .bss past its file's last page is the module's data.
            if !anonymous || m.isBSSTail(after: previous) { return .line("file_backed") }
            if m.path == "[stack]" { return .line("thread_stacks") }
            if !read.pageLevel, CopyPlan.isStack(m, previous: previous) && sps.contains(where: { m.contains($0) }) { return .line("thread_stacks") }
            guard read.pageLevel else { return isHeapMapping(m) ? .mallocHeap : .candidate }
            return .pages
        }
        /// The present runs inside mapping `m`, from `at` on in `read.present` (moved up to them).
        func presentRuns(_ m: Mapping, _ at: inout Int) -> [(UInt64, UInt64)] {
            while at < read.present.count && read.present[at].end <= m.start { at += 1 }
            var runs: [(UInt64, UInt64)] = []
            var k = at
            while k < read.present.count && read.present[k].start < m.end {
                runs.append((max(read.present[k].start, m.start), min(read.present[k].end, m.end))); k += 1
            }
            return runs
        }

        // The mappings holding present bytes that neither a chunk mapped on its own, a thread
        // stack nor a heap segment (which holds every heap chunk) covers: the ones to name, known
        // before the pass over the chunks, so that naming them (a scan of the whole heap copy)
        // runs on another thread meanwhile. Checked against the pass's own list after it.
        var covered: [(start: UInt64, end: UInt64)] = []
        for r in (mapped + segments.map { (start: $0.0, end: $0.1) }).sorted(by: { $0.start < $1.start }) {
            if let last = covered.last, r.start <= last.end { covered[covered.count - 1].end = max(last.end, r.end) } else { covered.append(r) }
        }
        func fullyCovered(_ s: UInt64, _ t: UInt64) -> Bool {
            var l = 0, h = covered.count   // the last union interval starting at or before s
            while l < h { let mid = (l + h) / 2; if covered[mid].start <= s { l = mid + 1 } else { h = mid } }
            return l > 0 && covered[l - 1].end >= t
        }
        var predicted: [Mapping] = []
        var predictAt = 0
        for n in read.smaps.indices {
            switch whole(n) {
            case .candidate: predicted.append(read.smaps[n].mapping)
            case .pages:
                let m = read.smaps[n].mapping
                if presentRuns(m, &predictAt).contains(where: { !fullyCovered($0.0, $0.1) }) { predicted.append(m) }
            default: break
            }
        }
        var naming = BackgroundWork { nameAnonymous(predicted, read.moduleData, symbols: symbols, heap: heapImage, chunks: walk.chunks) }

        var presentAt = 0
        var heapAt = 0, mappedAt = 0
        var totalRSS: UInt64 = 0, totalPSS: UInt64 = 0, totalSwap: UInt64 = 0
        var namedCandidates: [(m: Mapping, rss: Int64, pss: Int64, swap: Int64)] = []
        for (n, e) in read.smaps.enumerated() {
            let m = e.mapping
            totalRSS &+= e.rss; totalPSS &+= e.pss; totalSwap &+= e.swap
            let rss = Int64(e.rss), pss = Int64(e.pss), swap = Int64(e.swap)
            // Share a mapping's PSS and swap among its lines as its RSS is shared.
            func part(_ bytes: Int64) -> (Int64, Int64) {
                rss > 0 ? (pss * bytes / rss, swap * bytes / rss) : (0, 0)
            }
            switch whole(n) {
            case .line(let key): add(key, key, "", rss: rss, pss: pss, swap: swap); continue
            case .mallocHeap: add("malloc_heap", "malloc_heap", MemoryAccount.plainName("malloc_heap"), rss: rss, pss: pss, swap: swap); continue
            case .candidate: namedCandidates.append((m, rss, pss, swap)); continue
            case .pages: break
            }
            // Page by page: the present runs inside this mapping.
            let runs = presentRuns(m, &presentAt)
            var counted: Int64 = 0
            // Bytes per holder, in a fixed array (the loop runs once per chunk: no hashing in it).
            let keys = ["malloc_in_use", "malloc_free", "malloc_top", "malloc_metadata", "mmapped_chunks", "thread_stacks", "anonymous"]
            var bytesOf = [Int64](repeating: 0, count: keys.count)
            let stateKey: [ChunkState: Int] = [.inUse: 0, .cachedFree: 1, .allocatorFree: 1, .top: 2, .metadata: 3]
            var keyOfState = [Int](repeating: 3, count: 8)
            for (st, k) in stateKey { keyOfState[Int(st.rawValue)] = k }
            // Heap chunks by state, chunks mapped on their own, and the rest.
            for (s, t) in runs {
                var a = s
                while let b = heap.previous(heapAt), heap.end(b) > a { heapAt = b }
                heap.skipOwn(&heapAt)
                while heapAt < heap.count && heap.end(heapAt) <= a { heapAt += 1; heap.skipOwn(&heapAt) }
                while mappedAt > 0 && mapped[mappedAt - 1].end > a { mappedAt -= 1 }
                while mappedAt < mapped.count && mapped[mappedAt].end <= a { mappedAt += 1 }
                while a < t {
                    var next = t
                    var key = 6
                    if heapAt < heap.count && heap.start(heapAt) <= a {
                        next = min(t, heap.end(heapAt))
                        key = keyOfState[Int(heap.state(heapAt).rawValue)]
                    } else if mappedAt < mapped.count && mapped[mappedAt].start <= a {
                        next = min(t, mapped[mappedAt].end)
                        key = stackRanges.contains(mapped[mappedAt].start) ? 5 : 4
                    } else {
                        if let end = inSegment(a) { key = 3; next = min(next, end) }
                        else if let s = nextSegmentStart(after: a) { next = min(next, s) }
                        if heapAt < heap.count { next = min(next, max(a + 1, heap.start(heapAt))) }
                        if mappedAt < mapped.count { next = min(next, max(a + 1, mapped[mappedAt].start)) }
                    }
                    bytesOf[key] += Int64(next - a)
                    counted += Int64(next - a)
                    a = next
                    if heapAt < heap.count && heap.end(heapAt) <= a { heapAt += 1; heap.skipOwn(&heapAt) }
                    if mappedAt < mapped.count && mapped[mappedAt].end <= a { mappedAt += 1 }
                }
            }
            var byKey: [String: Int64] = [:]
            for (k, v) in zip(keys, bytesOf) where v != 0 { byKey[k] = v }
            for (key, bytes) in byKey.sorted(by: { $0.key < $1.key }) where key != "anonymous" {
                let (p, w) = part(bytes)
                add(key, key, "", rss: bytes, pss: p, swap: w)
            }
            if let other = byKey["anonymous"] {
                let (p, w) = part(other)
                namedCandidates.append((m, other, p, w))
            }
            // The pages the two reads disagree on.
            if counted != rss {
                let (p, w) = part(rss - counted)
                add("unexplained", "unexplained", "", rss: rss - counted, pss: p, swap: w, mapping: false)
            }
            if runs.isEmpty && swap > 0 { add("anonymous", "anonymous", "", rss: 0, pss: 0, swap: swap) }
        }
        // Other anonymous memory, named by the module variable pointing into it most often.
        var named = naming.wait()
        if namedCandidates.map(\.m.start) != predicted.map(\.start) {   // (a chunk outside every heap segment)
            PhaseTrace().note("memory account: the mappings to name were not the ones predicted; named again")
            named = nameAnonymous(namedCandidates.map(\.m), read.moduleData, symbols: symbols, heap: heapImage, chunks: walk.chunks)
        }
        for c in namedCandidates {
            if let name = named[c.m.start] {
                add("anonymous:" + name, "anonymous", "anonymous memory pointed to by \(name)", rss: c.rss, pss: c.pss, swap: c.swap)
            } else {
                add("anonymous", "anonymous", "", rss: c.rss, pss: c.pss, swap: c.swap)
            }
        }
        var out = order.compactMap { lines[$0] }
        // Named anonymous lines after the plain one, most resident first; empty lines dropped,
        // except the fixed ones of malloc.
        let always: Set<String> = ["malloc_in_use", "malloc_free", "malloc_top", "malloc_metadata", "mmapped_chunks", "unexplained"]
        out = out.filter { always.contains($0.id) || $0.rss != 0 || $0.swap != 0 }
        let namedLines = out.filter { !$0.name.isEmpty && $0.name.hasPrefix("anonymous memory pointed") }.sorted { $0.rss > $1.rss }
        out = out.filter { !$0.name.hasPrefix("anonymous memory pointed") }
        if let i = out.firstIndex(where: { $0.id == "anonymous" }) { out.insert(contentsOf: namedLines, at: i) }
        else if let i = out.firstIndex(where: { $0.id == "shared" || $0.id == "file_backed" }) { out.insert(contentsOf: namedLines, at: i) }
        else { out.append(contentsOf: namedLines) }
        return MemoryAccount(rss: totalRSS, pss: totalPSS, swap: totalSwap, lines: out,
                             trimmable: walk.trimmableBytes, pageLevel: read.pageLevel)
    }

    /// For each mapping of `maps` with at least 64 KiB not otherwise explained (at most 32, the
    /// largest), what holds pointers into it: a module variable ("usedpools (python3.11)"), or a
    /// heap chunk a module variable points to ("a chunk that arenas (python3.11) points to":
    /// pymalloc's arena table). Whoever allocated a mapping keeps its base, a page-aligned address:
    /// the holder with the most page-aligned pointers into it names it, then the most pointers.
    static func nameAnonymous(_ maps: [Mapping], _ data: [(start: UInt64, bytes: [UInt8])], symbols: SymbolSession,
                              heap: MemoryImage, chunks: ChunkTable) -> [UInt64: String] {
        let wanted = maps.filter { $0.size >= 64 << 10 }.sorted { $0.size > $1.size }.prefix(32).sorted { $0.start < $1.start }
        guard !wanted.isEmpty else { return [:] }
        let ranges = wanted.map { ($0.start, $0.end) }
        /// Per mapping: (address of the word, whether it points at a page boundary), at most 4096.
        func pointers(from blocks: [(start: UInt64, base: UnsafeRawPointer, count: Int)]) -> [UInt64: [(UInt64, Bool)]] {
            let lo = ranges.first!.0, hi = ranges.last!.1
            var from: [UInt64: [(UInt64, Bool)]] = [:]
            for d in blocks {
                var off = 0
                while off + 8 <= d.count {
                    let w = d.base.loadUnaligned(fromByteOffset: off, as: UInt64.self)
                    if w >= lo && w < hi {
                        var l = 0, h = ranges.count
                        while l < h { let mid = (l + h) / 2; if ranges[mid].1 <= w { l = mid + 1 } else { h = mid } }
                        if l < ranges.count && ranges[l].0 <= w && w < ranges[l].1, (from[ranges[l].0]?.count ?? 0) < 4096 {
                            from[ranges[l].0, default: []].append((d.start + UInt64(off), w & 4095 == 0))
                        }
                    }
                    off += 8
                }
            }
            return from
        }
        var fromModules: [UInt64: [(UInt64, Bool)]] = [:]
        for d in data {
            d.bytes.withUnsafeBytes { b in
                for (k, v) in pointers(from: [(d.start, b.baseAddress!, b.count)]) { fromModules[k, default: []].append(contentsOf: v) }
            }
        }
        let fromHeap = pointers(from: heap.regions.map { ($0.start, UnsafeRawPointer($0.base), $0.count) })
        // Heap holders: per mapping, per in-use chunk (user address), (aligned, all) counts.
        var chunkScore: [UInt64: [UInt64: (Int, Int)]] = [:]
        for (start, words) in fromHeap {
            for (w, aligned) in words {
                guard let i = chunks.index(containing: w), chunks.state(i) == .inUse else { continue }
                let e = chunkScore[start, default: [:]][chunks.userAddress(i)] ?? (0, 0)
                chunkScore[start, default: [:]][chunks.userAddress(i)] = (e.0 + (aligned ? 1 : 0), e.1 + 1)
            }
        }
        // The module words holding each candidate chunk's address.
        let chunkTargets = Set(chunkScore.values.flatMap { $0.keys })
        var holders: [UInt64: UInt64] = [:]   // chunk user address -> a module word holding it
        if !chunkTargets.isEmpty {
            for d in data {
                d.bytes.withUnsafeBytes { b in
                    var off = 0
                    while off + 8 <= b.count {
                        let w = b.loadUnaligned(fromByteOffset: off, as: UInt64.self)
                        if chunkTargets.contains(w), holders[w] == nil { holders[w] = d.start + UInt64(off) }
                        off += 8
                    }
                }
            }
        }
        // Name every word address involved once.
        var words = Set(holders.values)
        for v in fromModules.values { for (w, _) in v { words.insert(w) } }
        let all = Array(words)
        var nameOf: [UInt64: String] = [:]
        SymbolSession.lock.locked {
            for (a, r) in zip(all, symbols.resolve(all)) {
                guard var s = r.symbol else { continue }
                // LTO's and GCC's clone suffixes (.lto_priv.0, .constprop.0) say nothing to the reader.
                if let dot = s.firstIndex(of: "."), s.utf8.first != UInt8(ascii: ".") { s = String(s[..<dot]) }
                let module = r.module.map { String($0.split(separator: "/").last ?? "") } ?? ""
                nameOf[a] = module.isEmpty ? s : "\(s) (\(module))"
            }
        }
        var out: [UInt64: String] = [:]
        for m in wanted {
            var score: [String: (Int, Int, Int)] = [:]   // name -> (aligned, all, module var first)
            for (w, aligned) in fromModules[m.start] ?? [] {
                guard let n = nameOf[w] else { continue }
                let e = score[n] ?? (0, 0, 1)
                score[n] = (e.0 + (aligned ? 1 : 0), e.1 + 1, 1)
            }
            for (chunk, c) in chunkScore[m.start] ?? [:] {
                guard let h = holders[chunk], let n = nameOf[h] else { continue }
                let name = "a chunk that \(n) points to"
                let e = score[name] ?? (0, 0, 0)
                score[name] = (e.0 + c.0, e.1 + c.1, 0)
            }
            if let best = score.max(by: { ($0.value.0, $0.value.1, $0.value.2, $1.key) < ($1.value.0, $1.value.1, $1.value.2, $0.key) }) {
                out[m.start] = best.key
            }
        }
        return out
    }
}
