import HeapModel

/// glibc's kinds of chunk: where ptmalloc keeps each one. The ids are the state bytes snapshot
/// files of format 1 recorded, so those files read as glibc's kinds.
extension ChunkKind {
    static let inUse = GlibcKinds.inUse
    static let tcache = GlibcKinds.tcache
    static let fastbin = GlibcKinds.fastbin
    static let unsorted = GlibcKinds.unsorted
    static let small = GlibcKinds.small
    static let large = GlibcKinds.large
    static let top = GlibcKinds.top
    static let mmapped = GlibcKinds.mmapped
    static let mallocInternal = GlibcKinds.mallocInternal
}

public enum GlibcKinds {
    public static let inUse = ChunkKind(0)
    public static let tcache = ChunkKind(1)
    public static let fastbin = ChunkKind(2)
    public static let unsorted = ChunkKind(3)
    public static let small = ChunkKind(4)
    public static let large = ChunkKind(5)
    public static let top = ChunkKind(6)
    public static let mmapped = ChunkKind(7)
    public static let mallocInternal = ChunkKind(8)

    /// The names and meanings of glibc's kinds, for a layout's header sizes: the program's pointer
    /// is `headerSize` past the chunk, and it may use all but the size field (8 bytes; mmapped
    /// chunks all but their two header words).
    public static func table(headerSize: UInt64 = 16, sizeField: UInt64 = 8, mmappedLoss: UInt64 = 16) -> AllocatorKinds {
        AllocatorKinds(allocator: "glibc", kinds: [
            .init(name: "in_use", state: .inUse, usableLoss: sizeField),
            .init(name: "tcache", state: .cachedFree, usableLoss: sizeField),
            .init(name: "fastbin", state: .allocatorFree, usableLoss: sizeField),
            .init(name: "unsorted", state: .allocatorFree, usableLoss: sizeField),
            .init(name: "small", state: .allocatorFree, usableLoss: sizeField),
            .init(name: "large", state: .allocatorFree, usableLoss: sizeField),
            .init(name: "top", state: .top, usableLoss: sizeField),
            .init(name: "mmapped", state: .inUse, usableLoss: mmappedLoss, ownMapping: true),
            .init(name: "malloc_internal", state: .metadata, usableLoss: sizeField),
        ], userOffset: headerSize)
    }

    /// Free memory `malloc_trim(0)` would give back to the system, as glibc's mtrim does it: the
    /// whole pages inside every free chunk in the bins (fastbins are consolidated first: counted
    /// alike; tcache chunks stay, malloc counts them in use), past the chunk's own list pointers
    /// (48 bytes); and each arena's top beyond its minimum chunk, in whole pages. An estimate: the
    /// consolidation can merge neighbours into larger runs of pages.
    public static func trimmableBytes(_ c: ChunkTable, pageSize: UInt64 = 4096) -> UInt64 {
        var total: UInt64 = 0
        for i in 0..<c.count { total &+= trimmable(c.kind[i], c.address[i], c.size[i], pageSize: pageSize) }
        return total
    }
    /// One chunk's part of `trimmableBytes` (the walk adds it up as it goes).
    @inline(__always) static func trimmable(_ k: ChunkKind, _ address: UInt64, _ size: UInt64, pageSize: UInt64 = 4096) -> UInt64 {
        let mask = pageSize - 1
        switch k {
        case .fastbin, .unsorted, .small, .large:
            let lo = (address &+ 48 &+ mask) & ~mask, hi = (address &+ size) & ~mask
            return hi > lo ? hi - lo : 0
        case .top:
            return size > 33 ? (size - 33) & ~mask : 0
        default: return 0
        }
    }
}
