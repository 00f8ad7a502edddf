/// Struct offsets of glibc malloc for one version (x86_64, LP64). Source: shared/reference/glibc-malloc.md
/// §2 (malloc_state), §3 (heap_info), §4 (tcache), §5 (safe-linking), §6 (mp_). Only the 2.36 column is
/// verified at run time here; the others come from the glibc sources.
public struct GlibcLayout: Sendable, Equatable {
    public let major: Int
    public let minor: Int
    /// The versions this layout was inferred for ("2.30–2.31") when glibc's own version string
    /// was not there to read (a static executable); nil when the version was read.
    public var inferredRange: String? = nil
    public var version: String { inferredRange ?? "\(major).\(minor)" }

    // malloc_state (2.27–2.42; 2.43 removed the fastbins and have_fastchunks: everything from top
    // moves down by 0x58)
    public let arenaMutex: UInt64 = 0x0
    public let arenaFlags: UInt64 = 0x4
    public let arenaFastbins: UInt64 = 0x10
    public let nFastbins: Int                // 10, or 0 from 2.43
    public let arenaTop: UInt64
    public let arenaBins: UInt64
    public let nBins = 128                 // bins 1...127
    public let arenaNext: UInt64
    public let arenaAttachedThreads: UInt64
    public let arenaSystemMem: UInt64
    public let arenaSize: UInt64
    public let noncontiguousBit: UInt32 = 0x2

    // heap_info
    public let heapInfoSize: UInt64          // 0x20 (≤2.34) or 0x30 (2.35+)
    public let heapInfoSizeOffset: UInt64 = 0x10
    public let heapInfoPrev: UInt64 = 0x08
    public let heapInfoMprotect: UInt64 = 0x18
    public let defaultHeapMax: UInt64 = 64 << 20

    // tcache_perthread_struct
    public let tcacheBins: Int               // 64, or 76 from 2.42
    public let tcacheCountWidth: Int         // 1 (≤2.29) or 2 bytes
    public let tcacheEntries: UInt64         // 0x40 / 0x80 / 0x98
    public let tcacheChunkSize: UInt64       // 0x250 / 0x290 / 0x300
    public let tcacheCountsAreFreeSlots: Bool // 2.42+: num_slots counts down

    public let safeLinking: Bool             // 2.32+

    // mmapped chunks: from 2.43 a chunk's size leaves out the last 16 bytes of its mapping
    // (mapping = lead + size + 16), and its usable size is size - 8 as for other chunks.
    public let mmappedTrailer: UInt64        // 0, or 16 from 2.43
    public let mmappedUsableLoss: UInt64     // 16, or 8 from 2.43

    // mp_ (struct malloc_par)
    public let mpHpPagesize: UInt64?         // 2.35+
    public let mpNMmaps: UInt64
    public let mpNMmapsMax: UInt64
    public let mpMmappedMem: UInt64
    public let mpSbrkBase: UInt64
    public let mpTcacheBins: UInt64
    public let mpTcacheCount: UInt64
    public let mpSize: UInt64

    // chunks
    public let sizeSz: UInt64 = 8
    public let headerSize: UInt64 = 16
    public let minChunk: UInt64 = 0x20
    public let alignMask: UInt64 = 15
    public let prevInUse: UInt64 = 1
    public let isMmapped: UInt64 = 2
    public let nonMainArena: UInt64 = 4

    public static let supported = "2.27 to 2.44"

    public init?(major: Int, minor: Int) {
        guard major == 2, (27...44).contains(minor) else { return nil }
        self.major = major
        self.minor = minor
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
