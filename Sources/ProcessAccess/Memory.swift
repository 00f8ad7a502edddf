import CShim
import Glibc

/// Reads the target's memory with process_vm_readv (falling back to /proc/PID/mem). Read-only.
/// Or, the same way, a core file's memory (`init(core:)`).
public struct RemoteMemory: Sendable {
    public let pid: Int32
    /// The core file read instead of a live process.
    public let core: CoreFile?
    public init(pid: Int32) { self.pid = pid; core = nil }
    public init(core: CoreFile) { pid = core.pid; self.core = core }

    /// Read up to `count` bytes at `address` into `dst`; returns bytes read (short at an unmapped page).
    public func read(_ address: UInt64, into dst: UnsafeMutableRawPointer, count: Int) -> Int {
        if count == 0 { return 0 }
        if let core { return core.read(address, into: dst, count: count) }
        let n = hs_read_remote(pid, dst, address, count)
        if n >= 0 { return n }
        return procMemRead(address, into: dst, count: count)
    }

    private func procMemRead(_ address: UInt64, into dst: UnsafeMutableRawPointer, count: Int) -> Int {
        let fd = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        if fd < 0 { return 0 }
        defer { close(fd) }
        var done = 0
        while done < count {
            let n = pread(fd, dst + done, count - done, off_t(Int64(bitPattern: address &+ UInt64(done))))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
        return done
    }

    /// Read `each` bytes at every one of `count` addresses `start + k*stride`, many per syscall.
    /// Returns how many leading addresses were read in full.
    public func gather(start: UInt64, stride: UInt64, count: Int, each: Int, into dst: UnsafeMutableRawPointer) -> Int {
        if core != nil {
            for k in 0..<count where read(start &+ UInt64(k) &* stride, into: dst + k * each, count: each) != each { return k }
            return count
        }
        var done = 0
        while done < count {
            let batch = min(1024, count - done)
            var local = (0..<batch).map { iovec(iov_base: dst + (done + $0) * each, iov_len: each) }
            var remote = (0..<batch).map {
                iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(start + UInt64(done + $0) * stride)), iov_len: each)
            }
            let n = hs_readv_remote(pid, &local, UInt(batch), &remote, UInt(batch))
            if n < 0 { return done }
            done += n / each
            if n / each < batch { return done }
        }
        return done
    }

    public func bytes(_ address: UInt64, count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { read(address, into: $0.baseAddress!, count: count) }
        return n == count ? out : nil
    }

    public func word(_ address: UInt64) -> UInt64? {
        var v: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &v) { read(address, into: $0.baseAddress!, count: 8) }
        return n == 8 ? v : nil
    }
}

/// /proc/PID/pagemap, for which pages of a range are resident or swapped: an anonymous page that
/// is neither has never been written and reads as zero, so it holds no pointer and need not be
/// copied. Reading it costs 8 bytes per page of the range, read in batches.
public final class Pagemap {
    let fd: Int32
    /// One buffer for every read (up to `batch` entries), allocated once.
    static let batch = 65536
    /// In its own mapping advised for a transparent huge page: copying 8 bytes per page of a
    /// 16 GiB reservation into it during the pause then misses the TLB far less (measured: the
    /// mmapped-chunk scan of such a target 30 ms with a malloc'ed buffer, 18 ms with this).
    static let bufBytes = 2 << 20
    let buf: UnsafeMutablePointer<UInt64>
    private let bufMapped: Bool
    /// Without pagemap (mode 0400: another user's process needs CAP_DAC_READ_SEARCH), residency
    /// per mapping from smaps (0444): a mapping with no resident or swapped page is left out,
    /// any other is taken whole. Mapping starts, in order, and whether each has any page in memory.
    let bySmaps: [(start: UInt64, end: UInt64, any: Bool)]?
    /// Whether page-level residency is known (pagemap), or only per mapping (smaps).
    public var exact: Bool { bySmaps == nil }

    public init?(pid: Int32) {
        let b: UnsafeMutablePointer<UInt64>, mapped: Bool
        if let p = mmap(nil, Pagemap.bufBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED {
            _ = madvise(p, Pagemap.bufBytes, 14 /* MADV_HUGEPAGE */)
            b = p.bindMemory(to: UInt64.self, capacity: Pagemap.batch); mapped = true
        } else {
            b = .allocate(capacity: Pagemap.batch); mapped = false
        }
        buf = b; bufMapped = mapped
        fd = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            bySmaps = nil
            // Faulted in now (made before the target is stopped): the reads during the pause
            // then copy into memory that is already there.
            buf.initialize(repeating: 0, count: Pagemap.batch)
            return
        }
        guard errno == EACCES || errno == EPERM, let text = try? ProcFS.readFile("/proc/\(pid)/smaps") else {
            if mapped { munmap(b, Pagemap.bufBytes) } else { b.deallocate() }
            return nil
        }
        var out: [(start: UInt64, end: UInt64, any: Bool)] = []
        for line in text.split(separator: "\n") {
            if let dash = line.firstIndex(of: "-"), let s = UInt64(line[..<dash], radix: 16),
               let sp = line.firstIndex(of: " "), let e = UInt64(line[line.index(after: dash)..<sp], radix: 16) {
                out.append((s, e, false))
            } else if (line.hasPrefix("Rss:") || line.hasPrefix("Swap:")), !out.isEmpty,
                      let kb = line.split(separator: " ").dropFirst().first.flatMap({ UInt64($0) }), kb > 0 {
                out[out.count - 1].any = true
            }
        }
        bySmaps = out
    }
    deinit { if fd >= 0 { close(fd) }; release() }
    private func release() { if bufMapped { munmap(buf, Pagemap.bufBytes) } else { buf.deallocate() } }

    /// The page frame of the kernel's zero page, which a read of a never-written anonymous page
    /// maps: present in pagemap, but not resident memory (smaps does not count it). Learned from a
    /// page of this process read once; nil where page frames are hidden (without CAP_SYS_ADMIN).
    public static let zeroPageFrame: UInt64? = {
        guard let p = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else { return nil }
        defer { munmap(p, 4096) }
        _ = strlen(p.assumingMemoryBound(to: CChar.self))   // a read fault (in libc: not optimised away) maps the zero page
        let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var e: UInt64 = 0
        guard pread(fd, &e, 8, off_t(Int64(bitPattern: UInt64(UInt(bitPattern: p)) / 4096 * 8))) == 8, e >> 63 == 1 else { return nil }
        let frame = e & ((1 << 55) - 1)
        return frame != 0 ? frame : nil
    }()

    /// Pages [cacheFirst, cacheFirst + cacheCount) are in `buf` from the last read.
    var cacheFirst: UInt64 = 0, cacheCount = 0

    /// The resident (or swapped) runs of pages in [start, end), page-aligned (an unresident page
    /// is never in one: reading it would map the zero page into the target). nil if unreadable.
    /// `prefetch`: the caller will ask next about ranges up to this address; a small range is
    /// read together with them (one read for thousands of small mappings, not one each).
    public func residentRuns(start: UInt64, end: UInt64, prefetch: UInt64 = 0, presentOnly: Bool = false) -> [(start: UInt64, end: UInt64)]? {
        let mask: UInt64 = presentOnly ? 1 << 63 : 3 << 62
        // Present pages that are the zero page are not resident memory.
        let zero = presentOnly ? Pagemap.zeroPageFrame : nil
        if let maps = bySmaps {
            var lo = 0, hi = maps.count
            while lo < hi { let mid = (lo + hi) / 2; if maps[mid].end <= start { lo = mid + 1 } else { hi = mid } }
            guard lo < maps.count, maps[lo].start <= start else { return [(start, end)] }
            return maps[lo].any ? [(start, end)] : []
        }
        let page: UInt64 = 4096
        let first = start / page, last = (end + page - 1) / page
        guard last > first else { return [] }
        var runs: [(start: UInt64, end: UInt64)] = []
        let batch = UInt64(Pagemap.batch)
        var p = first
        var runStart: UInt64 = 0, runEnd: UInt64 = 0, inRun = false
        while p < last {
            // Entries for pages [p, p + want) at buf[k ..< k + want].
            let want: UInt64, k: Int
            if p >= cacheFirst && p < cacheFirst + UInt64(cacheCount) {
                want = min(last, cacheFirst + UInt64(cacheCount)) - p; k = Int(p - cacheFirst)
            } else {
                let upTo = max(last, min(prefetch / page, p + batch))
                let n = Int(min(batch, upTo - p))
                guard fill(from: p, count: n) else { return nil }
                want = min(UInt64(n), last - p); k = 0
            }
            for i in 0..<Int(want) where buf[k + i] & mask != 0 && !(presentOnly && zero != nil && buf[k + i] & ((1 << 55) - 1) == zero!) {
                let pg = p + UInt64(i)
                if inRun && pg == runEnd { runEnd = pg + 1; continue }
                if inRun { runs.append((runStart * page, runEnd * page)) }
                runStart = pg; runEnd = pg + 1; inRun = true
            }
            p += want
        }
        if inRun { runs.append((runStart * page, runEnd * page)) }
        return runs.map { (max($0.start, start), min($0.end, end)) }
    }

    /// Read the entries of pages [first, first + count) into `buf`.
    private func fill(from first: UInt64, count: Int) -> Bool {
        cacheCount = 0
        var got = 0
        while got < count * 8 {
            let n = pread(fd, UnsafeMutableRawPointer(buf) + got, count * 8 - got, off_t(Int64(bitPattern: first * 8)) + off_t(got))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            got += n
        }
        cacheFirst = first; cacheCount = count
        return true
    }
}

/// Copy buffers prepared before the target is stopped: one anonymous mapping (or, with --spill,
/// one unnamed file), pre-faulted, carved up during the pause. Page faults are then paid before
/// the pause, not inside it. When the heap grew past the estimate, regions fall back to fresh
/// allocations; what the estimate's margin left unused is given back after the detach.
public final class BufferPool: @unchecked Sendable {
    let base: UnsafeMutableRawPointer?
    let size: Int
    var used = 0
    var live = 0
    /// The pool is a file in a --spill directory (shared, file-backed: the kernel can write it
    /// out and drop it under memory pressure) rather than anonymous memory.
    public let spilled: Bool
    /// Why the spill file could not be made (errno), 0 when it was or none was asked for.
    public let spillError: Int32
    /// Microseconds spent faulting the buffers in (before the stop).
    public let faultMicroseconds: UInt64

    /// `spill`: a directory to hold the buffers in an unnamed file (O_TMPFILE, mode 0600,
    /// gone when heapscope exits), instead of anonymous memory.
    public init(bytes: Int, spill: String? = nil) {
        let t0 = PhaseTrace.now()
        let n = (bytes + (2 << 20) - 1) & ~((2 << 20) - 1)
        spilled = spill != nil
        var p: UnsafeMutableRawPointer? = nil
        var err: Int32 = 0
        if n > 0, let dir = spill {
            let fd = open(dir, 0o20000000 | O_DIRECTORY /* O_TMPFILE */ | O_RDWR | O_EXCL | O_CLOEXEC, 0o600)
            if fd < 0 { err = errno } else {
                // The file's blocks reserved now (a full disk later cannot leave a copy half-made),
                // or, where the file system cannot reserve, only its size set.
                let r = posix_fallocate(fd, 0, off_t(n))
                if r != 0 && r != EOPNOTSUPP && r != EINVAL { err = r }
                else if r != 0 && ftruncate(fd, off_t(n)) != 0 { err = errno }
                else if let m = mmap(nil, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), m != MAP_FAILED { p = m }
                else { err = errno }
                close(fd)
            }
        } else if n > 0, let m = mmap(nil, n + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), m != MAP_FAILED {
            // Anonymous memory on a 2 MiB boundary, advised for transparent huge pages: one fault
            // and one zeroing per 2 MiB instead of 512, far fewer TLB misses for the analyses that
            // read the copy, and munmap at exit in a few milliseconds instead of ~80 per GiB.
            // `populate` falls back to 4 KiB pages when huge ones come slowly.
            let aligned = (Int(bitPattern: m) + (2 << 20) - 1) & ~((2 << 20) - 1)
            let lead = aligned - Int(bitPattern: m)
            if lead > 0 { munmap(m, lead) }
            if (2 << 20) - lead > 0 { munmap(m + lead + n, (2 << 20) - lead) }
            p = UnsafeMutableRawPointer(bitPattern: aligned)
            _ = madvise(p, n, 14 /* MADV_HUGEPAGE */)
        }
        // Fault every page in now, not during the pause (a file's pages are allocated too).
        var hugeBytes = 0
        if let p { hugeBytes = BufferPool.populate(p, n, huge: spill == nil) }
        spillError = err
        base = p; size = p == nil ? 0 : n
        faultMicroseconds = UInt64(max(0, PhaseTrace.now() - t0))
        if p != nil && spill == nil {
            PhaseTrace().note("buffer pool: \(n >> 20) MiB faulted in \(faultMicroseconds / 1000) ms, \(hugeBytes >> 20) MiB of it advised for huge pages")
        }
    }
    deinit { if let b = base { munmap(b, size) } }

    /// Fault in [p, p + n): the kernel zeroes each page, which is most of the cost; a big pool is
    /// split in two, the second half faulted by a thread of its own on another CPU. Returns
    /// the bytes faulted while advised for huge pages.
    static func populate(_ p: UnsafeMutableRawPointer, _ n: Int, huge: Bool = false) -> Int {
        let half = n >= 64 << 20 && BackgroundWork<Void>.secondCPU ? (n / 2) & ~((2 << 20) - 1) : 0
        guard half > 0 else { return fault(p, n, huge: huge) }
        let rest = p + half
        var second = BackgroundWork { fault(rest, n - half, huge: huge) }
        let first = fault(p, half, huge: huge)
        return second.wait() + first
    }
    /// `huge`: the range is advised for huge pages. It is faulted in 8 MiB at a time; a piece
    /// that takes longer than 4 KiB pages would (0.75 ms per MiB: a virtual machine's host can
    /// back fresh 2 MiB frames far more slowly than it backs small pages, measured here at up to
    /// 3.3 ms per MiB) turns the rest of the range over to 4 KiB pages.
    private static func fault(_ p: UnsafeMutableRawPointer, _ n: Int, huge: Bool) -> Int {
        let slice = huge ? 8 << 20 : n
        var off = 0, advisedHuge = huge, hugeBytes = 0
        while off < n {
            let len = min(slice, n - off)
            let t0 = PhaseTrace.now()
            if madvise(p + off, len, 23 /* MADV_POPULATE_WRITE (Linux 5.14+) */) != 0 && errno == EINVAL {
                var o = off   // older kernel: touch every page
                while o < off + len { p.storeBytes(of: 0, toByteOffset: o, as: UInt8.self); o += 4096 }
            }
            off += len
            if advisedHuge { hugeBytes += len }
            if advisedHuge && off < n && PhaseTrace.now() - t0 > 750 * Double(len >> 20) {
                _ = madvise(p + off, n - off, 15 /* MADV_NOHUGEPAGE */)
                advisedHuge = false
            }
        }
        return hugeBytes
    }

    public var capacity: Int { size }
    public var usedBytes: Int { used }
    /// Give back the pages no copy went to (the estimate's margin), once nothing more is copied.
    public func trimUnused() {
        guard let b = base else { return }
        let keep = (used + 4095) & ~4095
        guard keep < size else { return }
        _ = madvise(b + keep, size - keep, spilled ? 9 /* MADV_REMOVE */ : MADV_DONTNEED)
    }
    /// Give back every page (reads see zeros after this): once nothing reads the copy any more.
    func discard() {
        guard let b = base else { return }
        _ = madvise(b, size, spilled ? 9 /* MADV_REMOVE */ : MADV_DONTNEED)
    }
    func take(_ count: Int) -> UnsafeMutableRawPointer? {
        let need = (count + 63) & ~63
        guard let b = base, used + need <= size else { return nil }
        defer { used += need }
        return b + used
    }
}

/// A copied range of the target's memory. Owns its buffer (not zero-filled first: copying is the
/// pause, so nothing is touched twice).
public final class Region: @unchecked Sendable {
    public let start: UInt64
    public private(set) var count: Int
    public let base: UnsafeMutableRawPointer
    public var end: UInt64 { start + UInt64(count) }
    public let label: String

    private let mapped: Int   // bytes mmapped for big buffers, 0 if heap-allocated, -1 if from a pool
    private let pool: BufferPool?

    /// nil when the memory cannot be had (a count no mapping can hold).
    public init?(start: UInt64, count: Int, label: String, pool: BufferPool? = nil) {
        guard count >= 0 else { return nil }
        self.start = start
        self.count = count
        self.label = label
        if let pool, let p = pool.take(count) {
            base = p; mapped = -1; self.pool = pool
            return
        }
        self.pool = nil
        // Big copies go to anonymous memory advised for transparent huge pages: filling the
        // copy then takes one fault per 2 MiB instead of one per 4 KiB, which shortens the pause.
        if count >= 4 << 20 {
            guard let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), p != MAP_FAILED else { return nil }
            _ = madvise(p, count, 14 /* MADV_HUGEPAGE */)
            base = p
            mapped = count
        } else {
            base = UnsafeMutableRawPointer.allocate(byteCount: max(count, 16), alignment: 16)
            mapped = 0
        }
    }
    deinit {
        if mapped > 0 { munmap(base, mapped) } else if mapped == 0 { base.deallocate() }   // pool memory: the pool frees it
    }

    @inline(__always) public func contains(_ a: UInt64, _ len: UInt64 = 1) -> Bool {
        a >= start && a &+ len <= end && a &+ len >= a
    }
    @inline(__always) public func word(_ a: UInt64) -> UInt64 {
        base.loadUnaligned(fromByteOffset: Int(a - start), as: UInt64.self)
    }
    /// Give back the copy's pages (reads see zeros after this): `MemoryImage.discardContents`.
    func discard(pools: inout [ObjectIdentifier: BufferPool]) {
        if let pool { pools[ObjectIdentifier(pool)] = pool } else if mapped > 0 { _ = madvise(base, mapped, MADV_DONTNEED) }
    }
    /// Shrink the visible length (after a short read).
    func truncate(to n: Int) { count = min(count, n) }
}

/// Reads of a `MemoryImage` through the region the last one was in, held as plain values: passes
/// that touch every chunk (free lists, the reference scan, leak groups) look a region up only when
/// they leave it, and count no reference per read. One per thread (the image's own lookups are
/// left alone). The image must outlive it.
public struct RegionCursor {
    public let image: MemoryImage
    @usableFromInline var regionBase: UnsafeRawPointer? = nil, regionStart: UInt64 = 0, regionEnd: UInt64 = 0
    /// The current region's bytes and bounds (`base` nil before the first hit, or after a miss).
    @inlinable public var base: UnsafeRawPointer? { regionBase }
    @inlinable public var start: UInt64 { regionStart }
    @inlinable public var end: UInt64 { regionEnd }
    public init(_ image: MemoryImage) { self.image = image }

    /// Moves to the region holding [a, a + length); false (and no region) when none does.
    /// (Inlinable: the passes that use it are in other modules, and call it per word or block.)
    @inlinable @inline(__always) public mutating func reach(_ a: UInt64, _ length: UInt64 = 8) -> Bool {
        if regionBase != nil, a >= regionStart, a < regionEnd, regionEnd - a >= length { return true }
        return move(a, length)
    }
    @usableFromInline mutating func move(_ a: UInt64, _ length: UInt64) -> Bool {
        guard let r = image.lookup(a, length: length) else { regionBase = nil; return false }
        regionBase = UnsafeRawPointer(r.base); regionStart = r.start; regionEnd = r.end
        return true
    }
    /// The word at `a`, if copied.
    @inlinable @inline(__always) public mutating func word(_ a: UInt64) -> UInt64? {
        reach(a) ? regionBase!.loadUnaligned(fromByteOffset: Int(a - regionStart), as: UInt64.self) : nil
    }
    /// For a walk along links, at `current` after `previous`: tell the CPU that the copy of the
    /// link 16 hops ahead will be read soon, guessing the list keeps its last stride, when that
    /// is in the current region (a free list's links often step through memory by one stride, and
    /// each hop otherwise waits for a cache miss; a wrong guess costs a hint, never a fault).
    public func prefetchAhead(from previous: UInt64, to current: UInt64) {
        let a = current &+ (current &- previous) &* 16 &+ 8
        guard let b = regionBase, a >= regionStart, a < regionEnd else { return }
        hs_prefetch(b + Int(a - regionStart))
    }
}

/// The copy of the target's memory that analysis runs on after detaching: sorted, non-overlapping regions.
public final class MemoryImage: @unchecked Sendable {
    public private(set) var regions: [Region] = []
    public private(set) var totalBytes: Int = 0
    private var lastHit = 0

    public init() {}

    /// Give back the memory of the copies (their mappings: small buffers stay) once no analysis
    /// reads them any more: every read of them after this sees zeros. For a snapshot taken
    /// without contents, whose columns are made after the last read.
    public func discardContents() {
        var pools: [ObjectIdentifier: BufferPool] = [:]
        for r in regions { r.discard(pools: &pools) }
        for p in pools.values { p.discard() }
    }

    /// Add a copied region. Regions lying inside another are dropped, so that lookups by address
    /// stay a binary search over non-nested ranges. Regions added in address order are appended;
    /// otherwise the place is found by binary search (so a copy of many mappings stays linear).
    public func add(_ r: Region) {
        if r.count == 0 { return }
        if let last = regions.last, last.end <= r.start {
            regions.append(r); totalBytes += r.count; return
        }
        // First region whose end is past r.start: the only ones that can hold or be held by r.
        var lo = 0, hi = regions.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if regions[mid].end <= r.start { lo = mid + 1 } else { hi = mid }
        }
        if lo < regions.count, regions[lo].start <= r.start, regions[lo].end >= r.end { return }
        if lo < regions.count, regions[lo].start < r.start { lo += 1 }   // overlaps r's start: r goes after it
        var k = lo
        while k < regions.count, regions[k].start >= r.start, regions[k].end <= r.end { totalBytes -= regions[k].count; k += 1 }
        regions.replaceSubrange(lo..<k, with: [r])
        totalBytes += r.count
        lastHit = 0
    }

    /// The regions of `a` and `b` in one image, merged in linear time (as `add` would place them).
    public static func merged(_ a: MemoryImage, _ b: MemoryImage) -> MemoryImage {
        let m = MemoryImage()
        var i = 0, k = 0
        m.regions.reserveCapacity(a.regions.count + b.regions.count)
        while i < a.regions.count || k < b.regions.count {
            let next: Region
            if k >= b.regions.count || (i < a.regions.count && a.regions[i].start <= b.regions[k].start) {
                next = a.regions[i]; i += 1
            } else {
                next = b.regions[k]; k += 1
            }
            m.add(next)   // in address order: an append, or dropped / replacing when nested
        }
        return m
    }

    public func region(containing a: UInt64, length: UInt64 = 1) -> Region? {
        if lastHit < regions.count, regions[lastHit].contains(a, length) { return regions[lastHit] }
        guard let i = index(containing: a, length: length) else { return nil }
        lastHit = i
        return regions[i]
    }
    /// The region holding [a, a + length), searched without the cursor `region(containing:)`
    /// keeps (so threads may share the image: a `RegionCursor` each).
    public func lookup(_ a: UInt64, length: UInt64 = 1) -> Region? { index(containing: a, length: length).map { regions[$0] } }
    private func index(containing a: UInt64, length: UInt64) -> Int? {
        var lo = 0, hi = regions.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if regions[mid].end <= a { lo = mid + 1 } else { hi = mid }
        }
        return lo < regions.count && regions[lo].contains(a, length) ? lo : nil
    }

    /// The start of the first region that starts after `a`, if any.
    public func regionStart(after a: UInt64) -> UInt64? {
        var lo = 0, hi = regions.count
        while lo < hi { let mid = (lo + hi) / 2; if regions[mid].start <= a { lo = mid + 1 } else { hi = mid } }
        return lo < regions.count ? regions[lo].start : nil
    }

    public func word(_ a: UInt64) -> UInt64? { region(containing: a, length: 8)?.word(a) }
    public func u32(_ a: UInt64) -> UInt32? {
        guard let r = region(containing: a, length: 4) else { return nil }
        return r.base.loadUnaligned(fromByteOffset: Int(a - r.start), as: UInt32.self)
    }
    public func u16(_ a: UInt64) -> UInt16? {
        guard let r = region(containing: a, length: 2) else { return nil }
        return r.base.loadUnaligned(fromByteOffset: Int(a - r.start), as: UInt16.self)
    }
    public func u8(_ a: UInt64) -> UInt8? {
        guard let r = region(containing: a, length: 1) else { return nil }
        return r.base.load(fromByteOffset: Int(a - r.start), as: UInt8.self)
    }
    public func bytes(_ a: UInt64, count: Int) -> [UInt8]? {
        guard let r = region(containing: a, length: UInt64(count)) else { return nil }
        return Array(UnsafeRawBufferPointer(start: r.base + Int(a - r.start), count: count))
    }

    /// Append the `count` bytes at `a` to `out`, zeros where nothing was copied (pages never
    /// written, which read as zeros in the process too).
    public func append(_ a: UInt64, count: Int, to out: inout [UInt8]) {
        if let r = region(containing: a, length: UInt64(count)) {
            out.append(contentsOf: UnsafeRawBufferPointer(start: r.base + Int(a - r.start), count: count))
            return
        }
        let (end, o) = a.addingReportingOverflow(UInt64(count))
        guard !o else { out.append(contentsOf: repeatElement(0, count: count)); return }
        var at = a
        while at < end {
            if let r = region(containing: at) {
                let n = Int(min(end, r.end) - at)
                out.append(contentsOf: UnsafeRawBufferPointer(start: r.base + Int(at - r.start), count: n))
                at += UInt64(n)
            } else {
                let next = min(end, regionStart(after: at) ?? end)
                out.append(contentsOf: repeatElement(0, count: Int(next - at)))
                at = next
            }
        }
    }
}

/// How long the target may still be stopped: copies check it between batches and stop early
/// (`exceeded` is then set) rather than keep the target stopped past its budget.
public final class StopBudget: @unchecked Sendable {
    public let deadlineNs: UInt64
    public private(set) var exceeded = false
    public init(deadlineNs: UInt64) { self.deadlineNs = deadlineNs }
    /// True (and remembered) once the deadline has passed.
    public func check() -> Bool {
        if !exceeded && hs_monotonic_ns() > deadlineNs { exceeded = true }
        return exceeded
    }
}

/// Copies many ranges at once with process_vm_readv (IOV_MAX per call); a range that fails in
/// bulk is retried alone so that one unmapped page never loses the others. Large ranges are read
/// in pieces of at most 64 MiB so that the stop budget is checked between them.
public struct BulkCopier {
    public let remote: RemoteMemory
    public let pool: BufferPool?
    public let budget: StopBudget?
    public init(pid: Int32, pool: BufferPool? = nil, budget: StopBudget? = nil) {
        remote = RemoteMemory(pid: pid); self.pool = pool; self.budget = budget
    }
    public init(remote: RemoteMemory, pool: BufferPool? = nil, budget: StopBudget? = nil) {
        self.remote = remote; self.pool = pool; self.budget = budget
    }

    public struct Request: Sendable {
        public var start: UInt64
        public var count: Int
        public var label: String
        public init(start: UInt64, count: Int, label: String) { self.start = start; self.count = count; self.label = label }
    }

    static let pieceBytes = 64 << 20

    /// Copy `requests` into `image`. Returns the ranges that could not be read in full (a range
    /// not reached before the budget ran out is left out, and the budget says so).
    @discardableResult
    public func copy(_ requests: [Request], into image: MemoryImage) -> [(Request, Int)] {
        var failures: [(Request, Int)] = []
        if let core = remote.core {
            // Only what the core (or a matching mapped file) holds is copied.
            for q in requests {
                var got = 0
                for run in core.readableRuns(start: q.start, end: q.start &+ UInt64(q.count)) {
                    guard let r = Region(start: run.start, count: Int(run.end - run.start), label: q.label) else { continue }
                    let n = remote.read(r.start, into: r.base, count: r.count)
                    if n < r.count { r.truncate(to: n) }
                    image.add(r)
                    got += n
                }
                if got < q.count { failures.append((q, got)) }
            }
            return failures
        }
        var i = 0
        while i < requests.count {
            if budget?.check() == true { break }
            // One readv: up to 512 iovecs and 64 MiB, whole small regions or one piece of a big one.
            var batch: [Region] = []
            var bytes = 0
            while i < requests.count, batch.count < 512, bytes < BulkCopier.pieceBytes {
                let q = requests[i]
                if q.count > BulkCopier.pieceBytes && !batch.isEmpty { break }
                i += 1
                guard let region = Region(start: q.start, count: q.count, label: q.label, pool: pool) else {
                    failures.append((q, 0)); continue
                }
                batch.append(region)
                bytes += q.count
            }
            if batch.isEmpty { continue }
            if batch.count == 1 {
                add(batch[0], got: readPieces(batch[0]), to: image, failures: &failures)
                continue
            }
            var local = batch.map { iovec(iov_base: $0.base, iov_len: $0.count) }
            var remoteV = batch.map { iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt($0.start)), iov_len: $0.count) }
            let n = hs_readv_remote(remote.pid, &local, UInt(local.count), &remoteV, UInt(remoteV.count))
            if n == bytes {
                for r in batch { image.add(r) }
            } else {
                // Retry each region of this batch alone, keeping what can be read.
                for r in batch { add(r, got: remote.read(r.start, into: r.base, count: r.count), to: image, failures: &failures) }
            }
        }
        return failures
    }

    private func add(_ r: Region, got: Int, to image: MemoryImage, failures: inout [(Request, Int)]) {
        if got == r.count { image.add(r); return }
        failures.append((Request(start: r.start, count: r.count, label: r.label), got))
        if got > 0 { r.truncate(to: got); image.add(r) }
    }

    /// Bytes of a big region read from its start, piece by piece with budget checks between.
    private func readPieces(_ r: Region) -> Int {
        var done = 0
        while done < r.count {
            if done > 0, budget?.check() == true { return done }
            let n = min(BulkCopier.pieceBytes, r.count - done)
            var local = iovec(iov_base: r.base + done, iov_len: n)
            var remoteV = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(r.start + UInt64(done))), iov_len: n)
            let got = hs_readv_remote(remote.pid, &local, 1, &remoteV, 1)
            if got == n { done += n; continue }
            // Short or failed: read what can be read of this piece the slow way.
            let slow = remote.read(r.start + UInt64(done), into: r.base + done, count: n)
            return done + max(0, slow)
        }
        return done
    }
}

/// Where page-level reads come from: the live process (while stopped), or a copy of it (after the
/// detach). The mmapped-chunk scan reads through this, so that a command that copies the resident
/// anonymous memory anyway finds mmapped chunks in the copy instead of during the pause.
public protocol PageSource {
    /// Read `each` bytes at `start + k*stride` for k in 0..<count; how many leading ones were read.
    func gather(start: UInt64, stride: UInt64, count: Int, each: Int, into dst: UnsafeMutableRawPointer) -> Int
    /// Read up to `count` bytes at `address`; how many were read.
    func read(_ address: UInt64, into dst: UnsafeMutableRawPointer, count: Int) -> Int
    /// The page runs of [start, end) that may hold data (resident, swapped, or copied); nil = all.
    func residentRuns(start: UInt64, end: UInt64, prefetch: UInt64) -> [(start: UInt64, end: UInt64)]?
}

/// The live process: process_vm_readv, and pagemap for residency.
public struct LivePages: PageSource {
    public let remote: RemoteMemory
    public let pagemap: Pagemap?
    public init(pid: Int32) { remote = RemoteMemory(pid: pid); pagemap = Pagemap(pid: pid) }
    public init(remote: RemoteMemory) { self.remote = remote; pagemap = remote.core == nil ? Pagemap(pid: remote.pid) : nil }
    public func gather(start: UInt64, stride: UInt64, count: Int, each: Int, into dst: UnsafeMutableRawPointer) -> Int {
        remote.gather(start: start, stride: stride, count: count, each: each, into: dst)
    }
    public func read(_ address: UInt64, into dst: UnsafeMutableRawPointer, count: Int) -> Int {
        remote.read(address, into: dst, count: count)
    }
    public func residentRuns(start: UInt64, end: UInt64, prefetch: UInt64) -> [(start: UInt64, end: UInt64)]? {
        if let core = remote.core { return core.heldRuns(start: start, end: end) }
        return pagemap?.residentRuns(start: start, end: end, prefetch: prefetch)
    }
}

extension MemoryImage: PageSource {
    public func gather(start: UInt64, stride: UInt64, count: Int, each: Int, into dst: UnsafeMutableRawPointer) -> Int {
        for k in 0..<count {
            let a = start &+ UInt64(k) &* stride
            guard let r = region(containing: a, length: UInt64(each)) else { return k }
            (dst + k * each).copyMemory(from: r.base + Int(a - r.start), byteCount: each)
        }
        return count
    }
    public func read(_ address: UInt64, into dst: UnsafeMutableRawPointer, count: Int) -> Int {
        guard let r = region(containing: address) else { return 0 }
        let n = min(count, Int(r.end - address))
        dst.copyMemory(from: r.base + Int(address - r.start), byteCount: n)
        return n
    }
    /// What was copied of [start, end), in whole pages.
    public func residentRuns(start: UInt64, end: UInt64, prefetch: UInt64) -> [(start: UInt64, end: UInt64)]? {
        var lo = 0, hi = regions.count
        while lo < hi { let mid = (lo + hi) / 2; if regions[mid].end <= start { lo = mid + 1 } else { hi = mid } }
        var out: [(start: UInt64, end: UInt64)] = []
        while lo < regions.count && regions[lo].start < end {
            let s = (max(regions[lo].start, start) + 4095) & ~4095, e = min(regions[lo].end, end) & ~4095
            if e > s { out.append((s, e)) }
            lo += 1
        }
        return out
    }
}
