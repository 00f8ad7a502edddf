import HeapModel
import ProcessAccess

/// The seam between heapscope and an allocator's heap walker. An allocator is detected and
/// planned before the target is stopped (an `AllocatorTarget`), captured while it is stopped
/// (an `AllocatorCapture`: dependent reads, then one bulk copy), and walked after the detach into
/// a `HeapWalk` in shared terms (`ChunkState`), with its own kinds of chunk as named detail
/// (`AllocatorKinds`). Only the walker knows the allocator's internals; glibc's is GlibcMalloc.
public protocol AllocatorTarget: Sendable {
    /// "glibc".
    var allocatorName: String { get }
    /// The allocator's version ("2.36").
    var version: String { get }
    /// The mappings as read before the stop.
    var maps: [Mapping] { get }
    /// Where the target's memory is read (the live process, or a core file).
    var remote: RemoteMemory { get }
    /// Bytes a capture will copy, estimated from the mappings (sizes the buffers before the stop).
    var estimatedCopyBytes: Int { get }
    /// Whether the capture copies `m` itself (the rest of the writable memory is copied as roots).
    func isHeapMapping(_ m: Mapping) -> Bool
    /// A fresh capture (one per stop).
    func newCapture() -> any AllocatorCapture
}

/// One capture of an allocator's state.
public protocol AllocatorCapture: AnyObject {
    /// With every thread stopped: reads only. `mmappedFrom`: the pages to find chunks mapped on
    /// their own in now (made before the stop); nil leaves them to `scanMmapped` after the detach
    /// (the caller copies the anonymous memory anyway).
    func capture(threads: [StoppedThread], pool: BufferPool?, budget: StopBudget?, mmappedFrom pages: PageSource?) throws(AllocatorError)
    /// What was copied.
    var image: MemoryImage { get }
    var threads: [StoppedThread] { get }
    /// Why the heap looked mid-update (a lock held, a thread inside the allocator): another stop may settle it.
    var unsettled: [String] { get }
    /// How the allocator's state was found.
    var discovery: String { get }
    /// After the detach: find the chunks mapped on their own in a copy of the anonymous memory.
    func scanMmapped(from pages: PageSource)
    /// After the detach: every chunk, in shared terms and the allocator's kinds.
    func walk() -> HeapWalk
    /// The allocator's own data outside its heaps: never roots of a leak check.
    var metadataRanges: [(start: UInt64, end: UInt64)] { get }
    /// The pointer that `word`, left at `address` by a free list, encodes when the allocator
    /// stores its links encoded (glibc 2.32+); nil when it stores them plain. What a chunk
    /// reused from a free list still holds in words its new owner has not written.
    func decodeLink(_ word: UInt64, at address: UInt64) -> UInt64?
    /// Which pages hold data (made before the stop): the capture reads no other page of the
    /// allocator's own data (a page never written would be mapped into the target by the read).
    func useResidency(_ pages: PageSource)
}

extension AllocatorCapture {
    public func decodeLink(_ word: UInt64, at address: UInt64) -> UInt64? { nil }
    public func useResidency(_ pages: PageSource) {}
}

/// Why an allocator's heap cannot be walked, in the allocator's words.
public enum AllocatorError: Error, CustomStringConvertible, Sendable {
    /// The target does not use this allocator (another one, another libc, a 32-bit process).
    case notThisAllocator(String)
    /// This allocator, in a version the walker cannot read.
    case unsupportedVersion(String)
    /// The allocator's state was not found.
    case stateNotFound(String)
    /// The allocator has not been initialised (nothing allocated yet).
    case notInitialised(String)
    public var description: String {
        switch self {
        case .notThisAllocator(let m), .unsupportedVersion(let m), .stateNotFound(let m), .notInitialised(let m): return m
        }
    }
}
