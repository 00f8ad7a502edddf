import Allocator
import Analysis
import HeapModel
import ProcessAccess
import Symbols

/// A leak check of a live process: the heap report, the class of every outstanding chunk, the roots.
public struct LeakInspection: Sendable {
    public var heap: HeapReport
    public var leaks: LeakReport
    public var roots: [RootRange]
    /// Every thread's registers (roots too).
    public var registers: [RegisterSet]
    /// Bytes of roots per kind.
    public var rootBytes: [RootKind: UInt64]
    /// The copied memory (heap and roots), for printing contents and following references.
    public var memory: MemoryImage
    /// Type labels of the blocks (as `types` computes them), when asked for.
    public var types: TypeInspection?
    /// The process (nil for a leak check read from a snapshot file).
    public var facts: ProcessFacts? = nil
    /// The image's symbol session (nil for a snapshot file).
    public var symbols: SymbolSession? = nil
    /// Every mapping of the image (as read before the stop, or from the core file).
    public var maps: [Mapping] = []
}

extension Inspector {
    /// Stop the target once, copy its heap and every other writable mapping, detach, and classify
    /// every outstanding chunk as Valgrind memcheck does. `anonymousRoots: false` does not count
    /// writable anonymous memory that malloc does not own (custom pools, mmaps) as roots.
    /// `types`: label the lost chunks (and with `typesOfReachable`, every chunk) as `types` does;
    /// `typeOwners`: with the root each chunk was first reached from (4 bytes a chunk more).
    public static func leaks(pid: Int32, options: InspectOptions = InspectOptions(),
                             anonymousRoots: Bool = true, types: Bool = false,
                             typesOfReachable: Bool = false, typeOwners: Bool = true) throws(InspectError) -> LeakInspection {
        try leaks(.process(pid), options: options, anonymousRoots: anonymousRoots, types: types, typesOfReachable: typesOfReachable, typeOwners: typeOwners)
    }
    /// `leaks` of a live process or a core file.
    public static func leaks(_ target: InspectTarget, options: InspectOptions = InspectOptions(),
                             anonymousRoots: Bool = true, types: Bool = false,
                             typesOfReachable: Bool = false, typeOwners: Bool = true) throws(InspectError) -> LeakInspection {
        if case .snapshot(let path) = target { return leaks(snapshot: try readSnapshot(path)) }
        let c = try inspectCapturing(target, options: options, writable: true)
        return leaks(image: c, options: options, anonymousRoots: anonymousRoots, types: types, typesOfReachable: typesOfReachable,
                     lineage: typeOwners ? .owners : .none)
    }

    /// `leaks` of a process image taken with `writable` (its copied memory holds the roots).
    public static func leaks(image c: ProcessImage, options: InspectOptions = InspectOptions(), anonymousRoots: Bool = true,
                             types: Bool = false, typesOfReachable: Bool = false) -> LeakInspection {
        leaks(image: c, options: options, anonymousRoots: anonymousRoots, types: types, typesOfReachable: typesOfReachable, lineage: .owners)
    }

    /// `lineage`: what the labels keep of how each chunk was reached (a snapshot keeps it all).
    static func leaks(image c: ProcessImage, options: InspectOptions, anonymousRoots: Bool = true,
                      types: Bool, typesOfReachable: Bool, lineage: TypePropagation.Lineage) -> LeakInspection {
        let trace = PhaseTrace()
        let memory = c.memory()
        let walk = c.report.heap
        let (roots, sets) = leakRoots(maps: c.writableMaps, threads: c.capture.threads, walk: walk, capture: c.capture,
                                      anonymous: anonymousRoots, shared: options.sharedRoots)
        let blocks = Blocks(walk.chunks)
        trace.mark("leaks: roots and blocks")
        // Labelling needs nothing of the scan: it is done on a thread of its own beside it (with a
        // MemoryImage of its own, and no progress lines), unless the scan is over first and finds
        // nothing to label. Labels that keep every chain (a snapshot's) are made after the scan,
        // whose work stack would be held with them: only what they read is made beside it.
        let nothingToLabel = Flag()
        let whole = lineage != .chains
        var labelling = types ? BackgroundWork { () -> (TypeInspection?, LabelSources) in
            let own = c.memory()
            let sources = labelSources(image: c, memory: own, blocks: blocks, text: true)
            if !whole || nothingToLabel.isSet { return (nil, sources) }
            var quiet = options
            quiet.progress = nil
            return (label(image: c, memory: own, blocks: blocks, pid: c.accessPid, options: quiet, lineage: lineage, sources: sources), sources)
        } : nil
        let what = "scanning \(memory.totalBytes >> 20) MiB for references to \(blocks.count) chunks"
        options.progress?(what)
        let report = Reachability.check(blocks: blocks, memory: memory, roots: roots, registerWords: sets.flatMap(\.words),
                                        progress: options.progress.map { say in { say("\(what), \(Int($0 * 100))%") } })
        trace.mark("leaks: reference scan")
        var bytes: [RootKind: UInt64] = [:]
        for r in roots { bytes[r.kind, default: 0] += r.end - r.start }
        bytes[.registers] = UInt64(sets.reduce(0) { $0 + $1.words.count } * 8)
        // Lost chunks are reached from no root: their types come from their contents, and from
        // the types of reachable chunks they resemble (so, when there are any, every chunk is typed).
        // With nothing lost and only lost chunks listed, there is nothing to label.
        let anyLost = report.leakClass.contains { $0 != .stillReachable }
        if !(anyLost || typesOfReachable) { nothingToLabel.set() }
        let made = labelling?.wait()
        let wanted = types && (anyLost || typesOfReachable)
        let labels = !wanted ? nil : made?.0
            ?? label(image: c, memory: memory, blocks: blocks, pid: c.accessPid, options: options, lineage: lineage, sources: made?.1)
        trace.mark("leaks: types")
        return LeakInspection(heap: c.report, leaks: report, roots: roots, registers: sets, rootBytes: bytes, memory: memory, types: labels,
                              facts: c.facts, symbols: c.symbols, maps: c.target.maps)
    }

    /// The roots of a leak check: every register of every thread; each thread's stack from its
    /// stack pointer less the 128-byte red zone to the end of its mapping; the static TLS around
    /// each thread pointer; writable data of every module (.data, .bss); other writable
    /// anonymous memory, less malloc's (heap segments, mmapped chunks). malloc's own metadata
    /// is never a root: the arena structs and `mp_` are cut out of libc's data.
    /// Shared mappings are roots only when they were copied (`shared`).
    static func leakRoots(maps allMaps: [Mapping], threads: [StoppedThread], walk: HeapWalk, capture: any AllocatorCapture,
                          anonymous: Bool, shared: Bool = false) -> ([RootRange], [RegisterSet]) {
        let maps = shared ? allMaps : allMaps.filter { !$0.shared }
        var roots: [RootRange] = []
        var registers: [RegisterSet] = []
        var stackMaps = Set<UInt64>()
        func mapping(containing a: UInt64) -> Mapping? { maps.mapping(containing: a) }
        for t in threads {
            withUnsafeBytes(of: t.regs) { registers.append(RegisterSet(tid: t.tid, words: Array($0.bindMemory(to: UInt64.self)))) }
            if let m = mapping(containing: t.stackPointer) {
                roots.append(RootRange(start: max(m.start, t.stackPointer &- 128), end: m.end, kind: .stack, label: "thread \(t.tid) stack"))
                stackMaps.insert(m.start)
            }
        }
        // Static TLS; a thread whose descriptor lies in its stack mapping (all but the main one)
        // has it scanned with the stack already. Each window is cut out of the other roots.
        var tls: [(UInt64, UInt64)] = []
        for t in threads {
            guard let m = mapping(containing: t.fsBase), !stackMaps.contains(m.start) else { continue }
            let w = (max(m.start, t.fsBase &- (64 << 10)), min(m.end, t.fsBase + 4096))
            roots.append(RootRange(start: w.0, end: w.1, kind: .tls, label: "thread \(t.tid) TLS"))
            tls.append(w)
        }
        // The allocator's own: heap segments, chunks mapped on their own (as data), and its
        // metadata outside them (as roots: glibc's arena structs and mp_).
        var mallocOwned: [(UInt64, UInt64)] = []
        for a in walk.arenas { for s in a.segments { mallocOwned.append((s.start, s.end)) } }
        var own = [Bool](repeating: false, count: 256)   // (a table, not a set: this loop sees every chunk)
        for k in walk.chunks.kinds.ownMappingKinds { own[Int(k.rawValue)] = true }
        let chunks = walk.chunks
        chunks.kind.withUnsafeBufferPointer { kind in
            for i in 0..<kind.count where own[Int(kind[i].rawValue)] {
                mallocOwned.append((chunks.address[i], chunks.address[i] + chunks.size[i]))
            }
        }
        let metadata = capture.metadataRanges.map { ($0.start, $0.end) }

        // Cut out in one sweep: the cuts sorted once, a cursor moving forward with the mappings.
        let cuts = (mallocOwned + metadata + tls).sorted { $0.0 < $1.0 }
        var reach = [UInt64](repeating: 0, count: cuts.count)   // the furthest end of cuts[0...i]
        for i in cuts.indices { reach[i] = max(i > 0 ? reach[i - 1] : 0, cuts[i].1) }
        var cursor = 0
        for (previous, m) in zip([nil] + maps.map { Optional($0) }, maps) {
            if m.path == "[heap]" || stackMaps.contains(m.start) || m.path == "[stack]" || m.path.hasPrefix("[v") { continue }
            let kind: RootKind, label: String
            if m.shared {
                kind = .shared; label = m.path.isEmpty ? "shared" : m.path
            } else if m.path.hasPrefix("/") {
                kind = .moduleData; label = m.path
            } else if m.isBSSTail(after: previous) {
                kind = .moduleData; label = previous!.path + " .bss"
            } else {
                guard anonymous else { continue }
                kind = .anonymous; label = m.path.isEmpty ? "anonymous" : m.path
            }
            // Cuts up to `cursor` all end before this mapping, and so before every later one.
            while cursor < cuts.count && reach[cursor] <= m.start { cursor += 1 }
            var local: [(UInt64, UInt64)] = []
            var c = cursor
            while c < cuts.count && cuts[c].0 < m.end { if cuts[c].1 > m.start { local.append(cuts[c]) }; c += 1 }
            for (s, e) in subtract((m.start, m.end), local) {
                roots.append(RootRange(start: s, end: e, kind: kind, label: label))
            }
        }
        return (roots, registers)
    }

    /// `range` less every interval of `cuts`.
    static func subtract(_ range: (UInt64, UInt64), _ cuts: [(UInt64, UInt64)]) -> [(UInt64, UInt64)] {
        var out: [(UInt64, UInt64)] = []
        var from = range.0
        for (s, e) in cuts.filter({ $0.1 > range.0 && $0.0 < range.1 }).sorted(by: { $0.0 < $1.0 }) {
            if s > from { out.append((from, min(s, range.1))) }
            from = max(from, e)
            if from >= range.1 { break }
        }
        if from < range.1 { out.append((from, range.1)) }
        return out
    }
}

/// A flag one thread sets and another reads.
final class Flag: @unchecked Sendable {
    private let lock = Mutex()
    private var value = false
    func set() { lock.locked { value = true } }
    var isSet: Bool { lock.locked { value } }
}
