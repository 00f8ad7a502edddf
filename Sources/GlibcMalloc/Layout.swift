import HeapModel

/// Struct offsets of glibc malloc for one version (x86_64, LP64). The built-in tables (source:
/// shared/reference/glibc-malloc.md §2 malloc_state, §3 heap_info, §4 tcache, §5 safe-linking, §6
/// mp_) are the fallback: when libc's DWARF is at hand the offsets are read from it (`apply`), and
/// the tests check, for every glibc they run, that the table equals what DWARF says.
public struct GlibcLayout: Sendable, Equatable {
    public let major: Int
    public let minor: Int
    /// Where the offsets came from: "tables", or "DWARF" (libc's debug info).
    public private(set) var source = "tables"
    /// The versions this layout was inferred for ("2.30–2.31") when glibc's own version string
    /// was not there to read (a static executable); nil when the version was read.
    public var inferredRange: String? = nil
    public var version: String { inferredRange ?? "\(major).\(minor)" }

    // malloc_state (2.27–2.42; 2.43 removed the fastbins and have_fastchunks: everything from top
    // moves down by 0x58)
    public let arenaMutex: UInt64 = 0x0
    public let arenaFlags: UInt64 = 0x4
    public private(set) var arenaFastbins: UInt64 = 0x10
    public private(set) var nFastbins: Int                // 10, or 0 from 2.43
    public private(set) var arenaTop: UInt64
    public private(set) var arenaBins: UInt64
    public private(set) var nBins = 128                 // bins 1...127
    public private(set) var arenaNext: UInt64
    public private(set) var arenaAttachedThreads: UInt64
    public private(set) var arenaSystemMem: UInt64
    public private(set) var arenaSize: UInt64
    public let noncontiguousBit: UInt32 = 0x2

    // heap_info
    public private(set) var heapInfoSize: UInt64          // 0x20 (≤2.34) or 0x30 (2.35+)
    public private(set) var heapInfoSizeOffset: UInt64 = 0x10
    public private(set) var heapInfoPrev: UInt64 = 0x08
    public private(set) var heapInfoMprotect: UInt64 = 0x18
    public let defaultHeapMax: UInt64 = 64 << 20

    // tcache_perthread_struct
    public private(set) var tcacheBins: Int               // 64, or 76 from 2.42
    public private(set) var tcacheCountWidth: Int         // 1 (≤2.29) or 2 bytes
    public private(set) var tcacheEntries: UInt64         // 0x40 / 0x80 / 0x98
    public private(set) var tcacheChunkSize: UInt64       // 0x250 / 0x290 / 0x300
    public private(set) var tcacheCountsAreFreeSlots: Bool // 2.42+: num_slots counts down

    public let safeLinking: Bool             // 2.32+

    // mmapped chunks: from 2.43 a chunk's size leaves out the last 16 bytes of its mapping
    // (mapping = lead + size + 16), and its usable size is size - 8 as for other chunks.
    public let mmappedTrailer: UInt64        // 0, or 16 from 2.43
    public let mmappedUsableLoss: UInt64     // 16, or 8 from 2.43

    // mp_ (struct malloc_par)
    public private(set) var mpHpPagesize: UInt64?         // 2.35+
    public private(set) var mpNMmaps: UInt64
    public private(set) var mpNMmapsMax: UInt64
    public private(set) var mpMmappedMem: UInt64
    public private(set) var mpSbrkBase: UInt64
    public private(set) var mpTcacheBins: UInt64
    public private(set) var mpTcacheCount: UInt64
    public private(set) var mpSize: UInt64

    // struct pthread (exited threads): measured with gdb on 2.31, 2.36, 2.41, 2.43 and 2.44;
    // nil for the other versions unless DWARF says.
    public private(set) var pthreadTid: UInt64? = nil
    public private(set) var pthreadCancelHandling: UInt64? = nil
    public private(set) var pthreadStackBlock: UInt64? = nil
    public private(set) var pthreadStackBlockSize: UInt64? = nil

    // chunks
    public let sizeSz: UInt64 = 8
    public let headerSize: UInt64 = 16
    public let minChunk: UInt64 = 0x20
    public let alignMask: UInt64 = 15
    public let prevInUse: UInt64 = 1
    public let isMmapped: UInt64 = 2
    public let nonMainArena: UInt64 = 4

    public static let supported = "2.27 to 2.44"
    /// The newest version the tables know.
    public static let newestInTables = 44

    /// The tables' layout; nil outside 2.27–2.44. `newer`: a version past the tables, laid out as
    /// the newest they know until DWARF says otherwise (`apply` must then succeed).
    public init?(major: Int, minor: Int, newer: Bool = false) {
        guard major == 2, (27...GlibcLayout.newestInTables).contains(minor) || (newer && minor > GlibcLayout.newestInTables) else { return nil }
        self.major = major
        self.minor = minor
        if newer { source = "none" }
        let shift: UInt64 = minor >= 43 ? 0x58 : 0
        nFastbins = minor >= 43 ? 0 : 10
        mmappedTrailer = minor >= 43 ? 16 : 0
        mmappedUsableLoss = minor >= 43 ? 8 : 16
        arenaTop = 0x60 - shift; arenaBins = 0x70 - shift; arenaNext = 0x870 - shift
        arenaAttachedThreads = 0x880 - shift; arenaSystemMem = 0x888 - shift; arenaSize = 0x898 - shift
        heapInfoSize = minor >= 35 ? 0x30 : 0x20
        tcacheBins = minor >= 42 ? 76 : 64
        tcacheCountWidth = minor >= 30 ? 2 : 1
        tcacheEntries = minor >= 42 ? 0x98 : (minor >= 30 ? 0x80 : 0x40)
        tcacheChunkSize = minor >= 42 ? 0x300 : (minor >= 30 ? 0x290 : 0x250)
        tcacheCountsAreFreeSlots = minor >= 42
        safeLinking = minor >= 32
        if minor >= 43 {
            // thp_mode added at 0x28; 2.44 dropped tcache_unsorted_limit at the end.
            mpHpPagesize = 0x38; mpNMmaps = 0x44; mpNMmapsMax = 0x48; mpMmappedMem = 0x58; mpSbrkBase = 0x68
            mpTcacheBins = 0x70; mpTcacheCount = 0x80; mpSize = minor >= 44 ? 0x88 : 0x90
        } else if minor >= 35 {
            mpHpPagesize = 0x30; mpNMmaps = 0x3c; mpNMmapsMax = 0x40; mpMmappedMem = 0x50; mpSbrkBase = 0x60
            mpTcacheBins = 0x68; mpTcacheCount = 0x78; mpSize = 0x88
        } else {
            mpHpPagesize = nil; mpNMmaps = 0x28; mpNMmapsMax = 0x2c; mpMmappedMem = 0x38; mpSbrkBase = 0x48
            mpTcacheBins = 0x50; mpTcacheCount = 0x60; mpSize = 0x70
        }
        if [31, 36, 41, 43, 44].contains(minor) {
            pthreadTid = 0x2d0; pthreadCancelHandling = 0x308; pthreadStackBlock = 0x690; pthreadStackBlockSize = 0x698
        }
    }

    /// The structs `apply` reads (by DWARF tag name).
    public static let dwarfStructs: Set<String> = ["malloc_state", "malloc_par", "_heap_info", "tcache_perthread_struct", "pthread"]

    /// Take the offsets from libc's DWARF (`structs` by tag name, from `dwarfStructs`). All or
    /// nothing for malloc's structs: returns what is missing (and changes nothing) when DWARF lacks
    /// a struct or member; `struct pthread`'s fields are taken when all four are there.
    public mutating func apply(_ structs: [String: StructLayout]) -> [String] {
        var missing: [String] = []
        func member(_ s: String, _ m: String) -> StructLayout.Member? {
            guard let x = structs[s]?.members[m] else { missing.append("\(s).\(m)"); return nil }
            return x
        }
        for s in ["malloc_state", "malloc_par", "_heap_info", "tcache_perthread_struct"] where structs[s] == nil { missing.append("struct \(s)") }
        guard missing.isEmpty, let ms = structs["malloc_state"], let mp = structs["malloc_par"], let hi = structs["_heap_info"],
              let tc = structs["tcache_perthread_struct"] else { return missing }
        let top = member("malloc_state", "top"), bins = member("malloc_state", "bins"), next = member("malloc_state", "next")
        let attached = member("malloc_state", "attached_threads"), sys = member("malloc_state", "system_mem")
        let fast = ms.members["fastbinsY"]   // none from 2.43
        let hPrev = member("_heap_info", "prev"), hSize = member("_heap_info", "size"), hMprotect = member("_heap_info", "mprotect_size")
        let counts = tc.members["num_slots"] ?? tc.members["counts"]
        if counts == nil { missing.append("tcache_perthread_struct.counts") }
        let entries = member("tcache_perthread_struct", "entries")
        let nm = member("malloc_par", "n_mmaps"), nmMax = member("malloc_par", "n_mmaps_max"), mem = member("malloc_par", "mmapped_mem")
        // (2.43 renamed tcache_bins tcache_small_bins)
        let sbrk = member("malloc_par", "sbrk_base"), tb = mp.members["tcache_bins"] ?? member("malloc_par", "tcache_small_bins"), tcount = member("malloc_par", "tcache_count")
        guard missing.isEmpty, let top, let bins, let next, let attached, let sys, let hPrev, let hSize, let hMprotect, let counts, let entries,
              let nm, let nmMax, let mem, let sbrk, let tb, let tcount else { return missing }
        arenaFastbins = fast?.offset ?? arenaFastbins; nFastbins = Int(fast?.count ?? 0)
        arenaTop = top.offset; arenaBins = bins.offset; nBins = Int(bins.count / 2) + 1
        arenaNext = next.offset; arenaAttachedThreads = attached.offset; arenaSystemMem = sys.offset; arenaSize = ms.size
        heapInfoSize = hi.size; heapInfoSizeOffset = hSize.offset; heapInfoPrev = hPrev.offset; heapInfoMprotect = hMprotect.offset
        tcacheBins = Int(counts.count); tcacheCountWidth = Int(counts.elementSize); tcacheEntries = entries.offset
        tcacheChunkSize = (tc.size + sizeSz + alignMask) & ~alignMask
        tcacheCountsAreFreeSlots = tc.members["num_slots"] != nil
        mpHpPagesize = mp.members["hp_pagesize"]?.offset
        mpNMmaps = nm.offset; mpNMmapsMax = nmMax.offset; mpMmappedMem = mem.offset; mpSbrkBase = sbrk.offset
        mpTcacheBins = tb.offset; mpTcacheCount = tcount.offset; mpSize = mp.size
        if let p = structs["pthread"], let t = p.members["tid"], let c = p.members["cancelhandling"],
           let b = p.members["stackblock"], let n = p.members["stackblock_size"] {
            pthreadTid = t.offset; pthreadCancelHandling = c.offset; pthreadStackBlock = b.offset; pthreadStackBlockSize = n.offset
        }
        source = "DWARF"
        return []
    }

    /// Whether the offsets (not where they came from) are the same.
    public func sameOffsets(as other: GlibcLayout) -> Bool {
        var a = self, b = other
        a.source = ""; b.source = ""
        return a == b
    }

    /// A version past the tables ("2.45"), laid out as the newest they know until `apply` reads
    /// its DWARF; nil for anything else.
    public static func newer(version: String) -> GlibcLayout? {
        let parts = version.split(separator: ".")
        guard parts.count >= 2, let a = Int(parts[0]), let b = Int(parts[1]) else { return nil }
        return GlibcLayout(major: a, minor: b, newer: true)
    }

    /// Parse "2.36" (or "2.36.1") into a layout.
    public init?(version: String) {
        let parts = version.split(separator: ".")
        guard parts.count >= 2, let a = Int(parts[0]), let b = Int(parts[1]) else { return nil }
        self.init(major: a, minor: b)
    }

    /// Address of the fake chunk for regular bin i (1...127): its fd/bk are bins[2(i-1)], bins[2(i-1)+1].
    @inline(__always) public func binAt(_ arena: UInt64, _ i: Int) -> UInt64 {
        arena + arenaBins + UInt64(16 * (i - 1)) - 16
    }
    /// First chunk of an arena's first (non-main) heap: right after heap_info + malloc_state, aligned.
    public func firstChunkInFirstHeap(_ heap: UInt64) -> UInt64 {
        var p = heap + heapInfoSize + arenaSize
        let mis = (p + headerSize) & alignMask
        if mis != 0 { p += 16 - mis }
        return p
    }
    /// Chunk size held by tcache bin i (small bins only).
    public func tcacheBinSize(_ i: Int) -> UInt64? { i < 64 ? 0x20 + 16 * UInt64(i) : nil }
    /// Regular-bin kind for bin index.
    public func binKindIsSmall(_ i: Int) -> Bool { i < 64 }
    /// Decode a safe-linked pointer stored at `slot`.
    @inline(__always) public func reveal(_ slot: UInt64, _ value: UInt64) -> UInt64 {
        safeLinking ? value ^ (slot >> 12) : value
    }
}

extension GlibcLayout {
    /// glibc's kinds of chunk with this layout's header sizes.
    public var kinds: AllocatorKinds { GlibcKinds.table(headerSize: headerSize, sizeField: sizeSz, mmappedLoss: mmappedUsableLoss) }
}
