import Allocator
import HeapModel
import ProcessAccess
import Symbols

/// Everything one capture yields, from a live process (made while it was stopped, or right
/// after from what was read then) or from a core file: the heap walk, every mapping with the
/// process's facts (executable, start time, build-ids), the threads with their registers, the
/// copied memory and the one symbol session of the image. Every analysis takes an image;
/// nothing after the detach reads /proc/PID of the target or opens a session on its pid.
public struct ProcessImage {
    /// The allocator walk and what the capture cost (pause, attempts, bytes copied).
    public internal(set) var report: HeapReport
    /// The allocator as found before the stop, and what one capture of it copied.
    var target: any AllocatorTarget
    var capture: any AllocatorCapture
    /// The id the process was read through (ProcFS.accessPid): its pid, or a live thread's.
    var accessPid: Int32 = 0
    /// Writable mappings (as read while stopped) and the copies of those parts of them that the
    /// heap capture did not copy; empty unless asked for.
    public internal(set) var writableMaps: [Mapping] = []
    var writable = MemoryImage()
    /// Executable, start time, build-ids: read before the stop.
    public internal(set) var facts: ProcessFacts
    /// The one symbol session of this image (opened before the stop, or on the core file).
    public let symbols: SymbolSession

    init(report: HeapReport, target: any AllocatorTarget, capture: any AllocatorCapture, accessPid: Int32 = 0,
         maps: [Mapping] = [], writable: MemoryImage = MemoryImage(), facts: ProcessFacts, symbols: SymbolSession) {
        self.report = report; self.target = target; self.capture = capture; self.accessPid = accessPid
        self.writableMaps = maps; self.writable = writable; self.facts = facts; self.symbols = symbols
    }

    /// The allocator's capture (its walk's input: what was copied while stopped, where its state
    /// lives), for tools that record or replay it.
    public var allocatorCapture: any AllocatorCapture { capture }
    /// Every mapping, as read before the stop (or from the core file).
    public var mappings: [Mapping] { target.maps }
    /// Every thread as it was stopped: id, registers, thread pointer.
    public var threads: [StoppedThread] { capture.threads }
    /// Everything copied: the heap capture and the other writable mappings.
    public func memory() -> MemoryImage { MemoryImage.merged(capture.image, writable) }
}
