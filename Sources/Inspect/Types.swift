import Analysis
import GlibcMalloc
import HeapModel
import ProcessAccess
import Symbols

/// How a chunk's type is known.
public enum TypeConfidence: String, Sendable, CaseIterable {
    /// Its first word points into `vtable for X` (C++ object of dynamic type X).
    case vtable
    /// Its contents look like it: a NUL-terminated printable string is `char[]`.
    case heuristic
    case unknown
}

/// A type label per outstanding chunk.
public struct TypeInspection: Sendable {
    public var heap: HeapReport
    public var blocks: Blocks
    /// Per block: index into `names`, or -1 for unknown.
    public var label: [Int32]
    public var names: [String]
    public var confidence: [TypeConfidence]   // per name
    public var memory: MemoryImage
}

extension Inspector {
    /// Stop the target once (as `leaks` does), detach, and label every outstanding chunk whose
    /// contents tell its type: a C++ object by the vtable its first word points into (symbol
    /// `vtable for X`, through the process's symbol tables), a string by its bytes.
    public static func types(pid: Int32, options: InspectOptions = InspectOptions()) throws(InspectError) -> TypeInspection {
        let c = try inspectCapturing(pid: pid, options: options, writable: true)
        let memory = c.memory()
        let blocks = Blocks(c.report.heap.chunks)
        var label = [Int32](repeating: -1, count: blocks.count)
        var names: [String] = [], confidence: [TypeConfidence] = []
        var nameIndex: [String: Int32] = [:]
        func id(_ n: String, _ conf: TypeConfidence) -> Int32 {
            if let i = nameIndex[n] { return i }
            names.append(n); confidence.append(conf)
            nameIndex[n] = Int32(names.count - 1)
            return Int32(names.count - 1)
        }
        // First words that point into a module's read-only data: vtable candidates.
        let maps = (try? ProcFS.maps(pid: pid)) ?? []
        let modules = maps.filter { $0.path.hasPrefix("/") && !$0.executable }.map { ($0.start, $0.end) }
        let lo = modules.map(\.0).min() ?? 0, hi = modules.map(\.1).max() ?? 0
        var firstWord = [UInt64](repeating: 0, count: blocks.count)
        var candidates = Set<UInt64>()
        for k in 0..<blocks.count where blocks.end[k] - blocks.start[k] >= 8 {
            guard let w = memory.word(blocks.start[k]) else { continue }
            firstWord[k] = w
            if w & 7 == 0, w >= lo, w < hi, modules.contains(where: { w >= $0.0 && w < $0.1 }) { candidates.insert(w) }
        }
        var vtableType: [UInt64: String] = [:]
        if !candidates.isEmpty, let s = try? SymbolSession(pid: pid, useDebugInfo: options.useDebugInfo) {
            let values = Array(candidates)
            for (v, r) in zip(values, s.resolve(values)) {
                if let sym = r.symbol, sym.hasPrefix("vtable for ") { vtableType[v] = String(sym.dropFirst(11)) }
            }
        }
        for k in 0..<blocks.count {
            if let t = vtableType[firstWord[k]] { label[k] = id(t, .vtable); continue }
            if isString(memory, blocks.start[k], blocks.end[k]) { label[k] = id("char[]", .heuristic) }
        }
        return TypeInspection(heap: c.report, blocks: blocks, label: label, names: names, confidence: confidence, memory: memory)
    }

    /// Printable text (at least 2 characters) up to a NUL inside the chunk.
    static func isString(_ m: MemoryImage, _ start: UInt64, _ end: UInt64) -> Bool {
        guard let r = m.region(containing: start, length: min(end - start, 8)) else { return false }
        let stop = min(end, r.end)
        var a = start, n = 0
        while a < stop {
            let b = r.base.load(fromByteOffset: Int(a - r.start), as: UInt8.self)
            if b == 0 { return n >= 2 }
            guard (b >= 0x20 && b < 0x7f) || b == 0x09 || b == 0x0a else { return false }
            n += 1; a += 1
        }
        return false
    }
}
