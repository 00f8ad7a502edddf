import CShim
import Glibc
import HeapModel
import Inspect

/// Buffered stdout for large outputs (millions of rows).
public struct OutputBuffer {
    public var bytes: [UInt8] = []
    public init(capacity: Int = 1 << 20) { bytes.reserveCapacity(capacity) }
    public mutating func write(_ s: String) {
        bytes.append(contentsOf: s.utf8)
        if bytes.count > 1 << 20 { flush() }
    }
    /// Flush when a megabyte is buffered (the writers below never flush on their own).
    public mutating func flushIfFull() { if bytes.count > 1 << 20 { flush() } }
    public mutating func write(byte: UInt8) { bytes.append(byte) }
    public mutating func write(decimal v: UInt64) {
        if v < 10 { bytes.append(0x30 + UInt8(v)); return }
        var tmp: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                  UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = 0, x = v
        withUnsafeMutableBytes(of: &tmp) { t in
            while x > 0 { t[19 - n] = 0x30 + UInt8(x % 10); x /= 10; n += 1 }
            bytes.append(contentsOf: t[(20 - n)...])
        }
    }
    /// Lower-case hex digits, no prefix.
    public mutating func write(hexDigits v: UInt64) {
        let digits = hexDigitBytes
        var shift = v == 0 ? 0 : (63 - v.leadingZeroBitCount) / 4 * 4
        while shift >= 0 { bytes.append(digits[Int((v >> UInt64(shift)) & 15)]); shift -= 4 }
    }
    public mutating func write(hex v: UInt64) { bytes.append(0x30); bytes.append(0x78); write(hexDigits: v) }
    /// A JSON string (quoted, escaped), or null.
    public mutating func write(json s: String?) {
        guard var s else { bytes.append(contentsOf: "null".utf8); return }
        s.withUTF8 { write(jsonUTF8: $0) }
    }
    public mutating func write(utf8 u: UnsafeBufferPointer<UInt8>) { bytes.append(contentsOf: u) }
    /// UTF-8 bytes as a JSON string (quoted, escaped).
    public mutating func write(jsonUTF8 u: UnsafeBufferPointer<UInt8>) {
        bytes.append(0x22)
        do {
            var from = 0
            for i in 0..<u.count {
                let b = u[i]
                guard b < 0x20 || b == 0x22 || b == 0x5c else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: u[from..<i]))
                switch b {
                case 0x22: bytes.append(contentsOf: "\\\"".utf8)
                case 0x5c: bytes.append(contentsOf: "\\\\".utf8)
                case 0x0a: bytes.append(contentsOf: "\\n".utf8)
                case 0x09: bytes.append(contentsOf: "\\t".utf8)
                default:
                    let hx = Array("0123456789abcdef".utf8)
                    bytes.append(contentsOf: "\\u00".utf8); bytes.append(hx[Int(b >> 4)]); bytes.append(hx[Int(b & 15)])
                }
                from = i + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: u[from...]))
        }
        bytes.append(0x22)
    }
    public mutating func flush() {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress! + off, bytes.count - off) }
            if n <= 0 { if errno == EINTR { continue }; hs_output_failed(errno); break }
            off += n
        }
        bytes.removeAll(keepingCapacity: true)
    }
}

private let hexDigitBytes = Array("0123456789abcdef".utf8)

public func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

public func human(_ b: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(b), u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(b) B" : String(format1(v)) + " " + units[u]
}
public func format1(_ v: Double) -> String {
    let r = (v * 10).rounded() / 10
    return r == r.rounded() ? String(Int(r)) : String(r)
}
public func pad(_ s: String, _ n: Int, left: Bool = false) -> String {
    s.count >= n ? s : (left ? s + String(repeating: " ", count: n - s.count) : String(repeating: " ", count: n - s.count) + s)
}
public func jsonString(_ s: String) -> String {
    var b = OutputBuffer(capacity: s.utf8.count + 2)
    b.write(json: s)
    return String(decoding: b.bytes, as: UTF8.self)
}
public extension String {
    func replacingSpaces() -> String { String(self.map { $0 == " " ? "0" : $0 }) }
}

/// What was copied besides the heap and what was left out (a line for leaks, types, snapshot,
/// chunks), or nil when only the heap was copied.
public func copyText(_ r: HeapReport) -> String? {
    guard let a = r.beyondHeap else { return nil }
    var out: [String] = []
    if a.sharedBytes > 0 { out.append("\(human(a.sharedBytes)) of shared mappings (--shared-roots copies them)") }
    if a.unresidentBytes > 0 { out.append("\(human(a.unresidentBytes)) never written (reads as zeros)") }
    if a.belowStackPointerBytes > 0 { out.append("\(human(a.belowStackPointerBytes)) of stacks below the stack pointers") }
    let whole = a.residencyPerMapping ? " (pagemap unreadable without CAP_DAC_READ_SEARCH: mappings with any page in memory copied whole)" : ""
    return sideEffectsText(r) + "copied \(human(UInt64(r.copiedBytes))) (heap and \(human(a.copiedBytes)) besides)" + (out.isEmpty ? "" : "; not copied: " + out.joined(separator: ", ")) + whole
}

/// What stopping did to the target that it can notice, one line each ("" if nothing).
public func sideEffectsText(_ r: HeapReport) -> String {
    r.sideEffects.map { "side effect: \($0)\n" }.joined()
}

/// The same as a JSON member, `,"copy":{...}`, or "" when only the heap was copied.
public func copyJSON(_ r: HeapReport) -> String {
    guard let a = r.beyondHeap else { return "" }
    return ",\"side_effects\":[" + r.sideEffects.map(jsonString).joined(separator: ",") + "]" + ",\"copy\":{\"copied_bytes\":\(r.copiedBytes),\"beyond_heap_bytes\":\(a.copiedBytes),\"shared_not_copied_bytes\":\(a.sharedBytes)" +
        ",\"unresident_not_copied_bytes\":\(a.unresidentBytes),\"below_stack_pointer_bytes\":\(a.belowStackPointerBytes)" +
        ",\"residency\":\"\(a.residencyPerMapping ? "mapping" : "page")\"}"
}

/// "paused 1.2 ms", or for a core file "core file PATH" (nothing was stopped).
public func pausedText(_ r: HeapReport) -> String {
    if let core = r.coreFile { return "core file \(core)" }
    let ms = Double(r.pauseMicroseconds) / 1000
    return "paused \(format1(ms < 10 ? (ms * 100).rounded() / 100 : ms)) ms"
}


public enum StatFormat {
    public static func text(_ r: HeapReport) -> String {
        var s = ""
        let ms = Double(r.pauseMicroseconds) / 1000
        s += "pid \(r.pid): glibc \(r.allocatorVersion) malloc, \(r.arenas.count) arena\(r.arenas.count == 1 ? "" : "s"), \(r.threads.count) thread\(r.threads.count == 1 ? "" : "s")\n"
        if let core = r.coreFile {
            s += "core file \(core): nothing stopped"
        } else {
            s += "paused \(format1(ms < 10 ? (ms * 100).rounded() / 100 : ms)) ms"
        }
        if r.attempts > 1 {
            s += " in \(r.attempts) attempts"
            if r.attemptPauses.count == r.attempts { s += " (" + r.attemptPauses.map { format1(Double($0) / 1000) }.joined(separator: " + ") + ")" }
        }
        if r.stopBudgetMicroseconds > 0 { s += " of a \(format1(Double(r.stopBudgetMicroseconds) / 1000)) ms budget" }
        s += ", copied \(human(UInt64(r.copiedBytes))), analysed in \(format1(Double(r.analysisMicroseconds) / 1000)) ms\n"
        s += "found: \(r.discovery)\n"
        s += sideEffectsText(r) + "\n"
        // One column per kind of free chunk the allocator has (glibc: its caches and bins).
        let kinds = r.kinds, freeKinds = kinds.freeKinds
        let header = ["arena", "address", "system", "in use", "in-use bytes"] + freeKinds.map { kinds.name($0) } + ["top", "internal"]
        let widths = [7, 16, 11, 9, 13] + freeKinds.map { _ in 11 } + [11, 9]
        s += zip(header, widths).map { pad($0, $1) }.joined(separator: " ") + "\n"
        for a in r.arenas {
            let inUse = a.tally(.inUse, kinds)
            var cols = [a.isMain ? "main" : "\(a.index)", hex(a.address), human(a.systemBytes), "\(inUse.count)", human(inUse.bytes)]
            for k in freeKinds { cols.append(human(a.byKind[k]?.bytes ?? 0)) }
            cols.append(human(a.topSize))
            cols.append(human(a.tally(.metadata, kinds).bytes))
            s += zip(cols, widths).map { pad($0, $1) }.joined(separator: " ") + "\n"
        }
        s += "\nmmapped: \(r.mmapped.count) chunk\(r.mmapped.count == 1 ? "" : "s"), \(human(r.mmapped.bytes))\n"
        if let ex = r.heap.exitedThreads, !ex.isEmpty {
            let u = r.heap.exitedTally(.unjoined), c = r.heap.exitedTally(.cached)
            s += "exited threads: \(u.count) not joined (stacks \(human(u.bytes)) kept until pthread_join), \(c.count) stack\(c.count == 1 ? "" : "s") cached by glibc (\(human(c.bytes)))\n"
        }
        let t = r.totals
        let outstanding = r.total(.inUse)
        let free = r.total(.cachedFree) + r.total(.allocatorFree)
        s += "totals:  \(outstanding.count) chunks in use (\(human(outstanding.bytes)))"
        s += ", \(free.count) free chunks (\(human(free.bytes))) + top \(human(r.total(.top).bytes))\n"
        s += "         free by kind: " + freeKinds.map { "\(kinds.name($0)) \(t[$0]?.count ?? 0)/\(human(t[$0]?.bytes ?? 0))" }.joined(separator: ", ") + "\n"
        s += "\nmallinfo2 (what the target's own mallinfo2() returns; chunks in per-thread caches count as in use):\n  "
        s += r.mallinfo2.fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ") + "\n"
        if !r.warnings.isEmpty {
            s += "\nwarnings (\(r.warnings.count)):\n"
            for w in r.warnings.prefix(50) { s += "  [\(w.kind.rawValue)] \(w.message)\n" }
            if r.warnings.count > 50 { s += "  ... \(r.warnings.count - 50) more (see --json)\n" }
        }
        return s
    }

    public static func tallyJSON(_ t: Tally) -> String { "{\"chunks\":\(t.count),\"bytes\":\(t.bytes)}" }
    public static func threadsJSON(_ t: Tally) -> String { "{\"threads\":\(t.count),\"bytes\":\(t.bytes)}" }

    public static func json(_ r: HeapReport) -> String {
        var s = "{\"pid\":\(r.pid),\"core_file\":\(r.coreFile.map(jsonString) ?? "null"),\"pause_us\":\(r.pauseMicroseconds),\"attempts\":\(r.attempts)"
        s += ",\"attempt_pause_us\":[" + r.attemptPauses.map(String.init).joined(separator: ",") + "],\"max_stop_us\":\(r.stopBudgetMicroseconds)"
        s += ",\"side_effects\":[" + r.sideEffects.map(jsonString).joined(separator: ",") + "]"
        s += ",\"glibc_version\":\(jsonString(r.allocatorVersion)),\"discovery\":\(jsonString(r.discovery))"
        s += ",\"copied_bytes\":\(r.copiedBytes),\"analysis_us\":\(r.analysisMicroseconds),\"threads\":\(r.threads.count)"
        s += ",\"peak_rss_kb\":\(peakRSSKilobytes())"
        s += ",\"arenas\":["
        s += r.arenas.map { a in
            var o = "{\"index\":\(a.index),\"address\":\(jsonString(hex(a.address))),\"main\":\(a.isMain)"
            o += ",\"system_bytes\":\(a.systemBytes),\"attached_threads\":\(a.attachedThreads),\"mutex_held\":\(a.mutexHeld)"
            o += ",\"top\":\(jsonString(hex(a.top))),\"top_bytes\":\(a.topSize)"
            o += ",\"segments\":[" + a.segments.map { "[\(jsonString(hex($0.start))),\(jsonString(hex($0.end)))]" }.joined(separator: ",") + "]"
            o += ",\"states\":{" + r.kinds.all.compactMap { k in a.byKind[k].map { "\(jsonString(r.kinds.name(k))):\(tallyJSON($0))" } }.joined(separator: ",") + "}"
            return o + "}"
        }.joined(separator: ",")
        s += "],\"mmapped\":\(tallyJSON(r.mmapped))"
        s += ",\"exited_threads\":" + (r.heap.exitedThreads.map { ex in
            "{\"unjoined\":\(threadsJSON(r.heap.exitedTally(.unjoined))),\"cached\":\(threadsJSON(r.heap.exitedTally(.cached))),\"stacks\":["
                + ex.map { "{\"descriptor\":\(jsonString(hex($0.descriptor))),\"start\":\(jsonString(hex($0.start))),\"end\":\(jsonString(hex($0.end))),\"state\":\"\($0.state == .unjoined ? "unjoined" : "cached")\"}" }.joined(separator: ",") + "]}"
        } ?? "null")
        let t = r.totals
        s += ",\"totals\":{" + r.kinds.all.map { "\(jsonString(r.kinds.name($0))):\(tallyJSON(t[$0] ?? Tally()))" }.joined(separator: ",") + "}"
        s += ",\"mallinfo2\":{" + r.mallinfo2.fields.map { "\(jsonString($0.0)):\($0.1)" }.joined(separator: ",") + "}"
        s += ",\"warnings\":[" + r.warnings.map { w in
            "{\"kind\":\(jsonString(w.kind.rawValue)),\"address\":\(w.address.map { jsonString(hex($0)) } ?? "null"),\"message\":\(jsonString(w.message))}"
        }.joined(separator: ",") + "]}\n"
        return s
    }
}

public enum ChunkFormat {
    /// Per chunk row: its block in `types` (outstanding chunks only), -1 otherwise.
    public static func blockOfChunk(_ types: TypeInspection?, count: Int) -> [Int32] {
        guard let ty = types else { return [] }
        var m = [Int32](repeating: -1, count: count)
        for k in 0..<ty.blocks.count { m[Int(ty.blocks.chunk[k])] = Int32(k) }
        return m
    }

    public static func text(_ r: HeapReport, rows: [Int], types: TypeInspection? = nil, into out: inout OutputBuffer) {
        let t = r.chunks
        let block = blockOfChunk(types, count: t.count)
        out.write("# pid \(r.pid), \(r.coreFile.map { "core file \($0)" } ?? "paused \(r.pauseMicroseconds) us"), \(rows.count) of \(t.count) chunks\n")
        out.write(pad("chunk", 16) + " " + pad("user", 16) + " " + pad("size", 10) + " " + pad("usable", 10) + " " + pad("arena", 5) + "  "
                  + (types == nil ? "state\n" : pad("state", 15, left: true) + " type\n"))
        for i in rows {
            let arena = t.arena[i] == ChunkTable.noArena ? "-" : String(t.arena[i])
            out.write(pad(hex(t.address[i]), 16) + " " + pad(hex(t.userAddress(i)), 16) + " " + pad(String(t.size[i]), 10) + " "
                      + pad(String(t.usableSize(i)), 10) + " " + pad(arena, 5) + "  ")
            if let ty = types {
                let k = Int(block[i])
                let label = k >= 0 ? ty.label(k).map { "\($0) (\(ty.confidence(k).name)\(ty.labels.ambiguous[k] ? ", via union" : ""))" } ?? "-" : "-"
                out.write(pad(t.kindName(i), 15, left: true) + " " + label + "\n")
            } else {
                out.write(t.kindName(i) + "\n")
            }
        }
        if !r.warnings.isEmpty { out.write("# \(r.warnings.count) warning(s); run `heapscope stat` for details\n") }
    }

    public static func json(_ r: HeapReport, rows: [Int], types: TypeInspection? = nil, into out: inout OutputBuffer) {
        let t = r.chunks
        let block = blockOfChunk(types, count: t.count)
        out.write("{\"pid\":\(r.pid),\"pause_us\":\(r.pauseMicroseconds),\"total_chunks\":\(t.count),\"chunks\":[")
        var first = true
        for i in rows {
            if !first { out.write(",") }
            first = false
            let arena = t.arena[i] == ChunkTable.noArena ? "null" : String(t.arena[i])
            out.write("{\"address\":\"\(hex(t.address[i]))\",\"user_address\":\"\(hex(t.userAddress(i)))\",\"size\":\(t.size[i]),\"usable_size\":\(t.usableSize(i)),\"arena\":\(arena),\"state\":\"\(t.kindName(i))\"")
            if let ty = types {
                let k = Int(block[i])
                let label = k >= 0 ? ty.label(k) : nil
                out.write(",\"type\":\(label.map(jsonString) ?? "null"),\"confidence\":\"\(label == nil ? "unknown" : ty.confidence(k).name)\",\"ambiguous\":\(k >= 0 && ty.labels.ambiguous[k])")
            }
            out.write("}")
        }
        out.write("],\"warnings\":[" + r.warnings.map { w in
            "{\"kind\":\(jsonString(w.kind.rawValue)),\"address\":\(w.address.map { jsonString(hex($0)) } ?? "null"),\"message\":\(jsonString(w.message))}"
        }.joined(separator: ",") + "]}\n")
    }
}

/// heapscope's own peak resident memory (VmHWM of this process's address space; unlike
/// ru_maxrss it does not inherit the parent's high-water mark through vfork+exec).
public func peakRSSKilobytes() -> Int {
    guard let f = fopen("/proc/self/status", "r") else { return 0 }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, f) != nil {
        let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if s.hasPrefix("VmHWM:") { return Int(s.dropFirst(6).filter { $0.isNumber }) ?? 0 }
    }
    return 0
}

/// The last component of a path.
public func basename(_ p: String) -> String { p.split(separator: "/").last.map(String.init) ?? p }
