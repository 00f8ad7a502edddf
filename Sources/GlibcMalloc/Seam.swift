import Allocator
import HeapModel
import ProcessAccess

/// glibc's malloc behind the allocator seam.
extension GlibcTarget: AllocatorTarget {
    public var allocatorName: String { "glibc" }
    public var version: String { layout.version }
    public var estimatedCopyBytes: Int { GlibcCapture.estimateCopyBytes(self) }
    public func isHeapMapping(_ m: Mapping) -> Bool { GlibcCapture.isHeapMapping(m) }
    public func newCapture() -> any AllocatorCapture { GlibcCapture(target: self) }
}

extension GlibcCapture: AllocatorCapture {
    public func capture(threads: [StoppedThread], pool: BufferPool?, budget: StopBudget?, mmappedFrom pages: PageSource?) throws(AllocatorError) {
        do { try captureHeap(threads: threads, pool: pool, budget: budget, mmappedFrom: pages) } catch { throw error.allocatorError }
    }
    public func useResidency(_ pages: PageSource) { residency = pages }
    /// Safe-linking: a tcache or fastbin link is stored as pointer ^ (its own address >> 12).
    public func decodeLink(_ word: UInt64, at address: UInt64) -> UInt64? {
        target.layout.safeLinking ? target.layout.reveal(address, word) : nil
    }
}

extension GlibcError {
    /// The same failure in the seam's terms.
    public var allocatorError: AllocatorError {
        switch self {
        case .notGlibc: return .notThisAllocator(description)
        case .unsupportedVersion: return .unsupportedVersion(description)
        case .mainArenaNotFound: return .stateNotFound(description)
        case .notInitialised: return .notInitialised(description)
        }
    }
}
