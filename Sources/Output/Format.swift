import CShim
import Glibc
import HeapModel
import Inspect
import ProcessAccess
import Symbols

/// Buffered stdout for large outputs (millions of rows).
public struct OutputBuffer {
    public var bytes: [UInt8] = []
    /// Where a record is put together before it is added (see `withScratch`).
    private var scratch: ScratchSpace? = nil

    /// Write a record of at most `room` bytes through plain stores into scratch memory, then add
    /// it at once (for records written millions of times: one append instead of one per field).
    /// Writing more than `room` bytes traps.
    public mutating func withScratch(_ room: Int, _ body: (inout RecordWriter) -> Void) {
        if scratch == nil || scratch!.capacity < room { scratch = ScratchSpace(capacity: max(room, 1 << 16)) }
        var w = RecordWriter(base: scratch!.base, capacity: room)
        body(&w)
        bytes.append(contentsOf: UnsafeBufferPointer(start: scratch!.base, count: w.count))
    }
    /// Write to standard output when a megabyte is buffered (off: the bytes are wanted as text).
    public var autoFlush = true
    public init(capacity: Int = 1 << 20) { bytes.reserveCapacity(capacity) }
    public mutating func write(_ s: String) {
        bytes.append(contentsOf: s.utf8)
        flushIfFull()
    }
    /// Flush when a megabyte is buffered (the writers below never flush on their own).
    public mutating func flushIfFull() { if autoFlush && bytes.count > 1 << 20 { flush() } }
    public mutating func write(byte: UInt8) { bytes.append(byte) }
    /// A literal's bytes as they are (for the fixed parts of JSON records: no escaping, no String).
    @inline(__always) public mutating func write(ascii s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
    public mutating func write(decimal v: UInt64) { withScratch(20) { $0.put(decimal: v) } }
    /// Lower-case hex digits, no prefix.
    public mutating func write(hexDigits v: UInt64) { withScratch(16) { $0.put(hexDigits: v) } }
    public mutating func write(hex v: UInt64) { bytes.append(0x30); bytes.append(0x78); write(hexDigits: v) }
    /// A JSON string (quoted, escaped), or null.
    public mutating func write(json s: String?) {
        guard var s else { bytes.append(contentsOf: "null".utf8); return }
        s.withUTF8 { write(jsonUTF8: $0) }
    }
    public mutating func write(utf8 u: UnsafeBufferPointer<UInt8>) { bytes.append(contentsOf: u) }
    public mutating func write(utf8Bytes u: [UInt8]) { bytes.append(contentsOf: u); flushIfFull() }
    /// UTF-8 bytes as a JSON string (quoted, escaped).
    public mutating func write(jsonUTF8 u: UnsafeBufferPointer<UInt8>) { withScratch(JSONText.maxLength(u.count)) { $0.put(json: u) } }
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

/// Memory a record is written into (see `OutputBuffer.withScratch`).
final class ScratchSpace {
    let base: UnsafeMutablePointer<UInt8>, capacity: Int
    init(capacity: Int) { base = .allocate(capacity: capacity); self.capacity = capacity }
    deinit { base.deallocate() }
}

/// Plain stores into memory of a known size (checked: writing past it traps, never overruns).
public struct RecordWriter {
    let base: UnsafeMutablePointer<UInt8>, capacity: Int
    public private(set) var count = 0

    @inline(__always) mutating func room(_ n: Int) -> UnsafeMutablePointer<UInt8> {
        precondition(n <= capacity - count, "a record outgrew the room computed for it")
        defer { count += n }
        return base + count
    }
    @inline(__always) public mutating func put(_ s: StaticString) {
        room(s.utf8CodeUnitCount).update(from: s.utf8Start, count: s.utf8CodeUnitCount)
    }
    @inline(__always) public mutating func put(_ u: UnsafeBufferPointer<UInt8>) {
        if let b = u.baseAddress { room(u.count).update(from: b, count: u.count) }
    }
    @inline(__always) public mutating func put(byte: UInt8) { room(1).pointee = byte }
    public mutating func put(decimal v: UInt64) {
        var digits = 1, x = v
        while x >= 10 { x /= 10; digits += 1 }
        let p = room(digits)
        x = v
        for i in stride(from: digits - 1, through: 0, by: -1) { p[i] = 0x30 + UInt8(x % 10); x /= 10 }
    }
    /// Lower-case hex digits, no prefix.
    public mutating func put(hexDigits v: UInt64) {
        let digits = v == 0 ? 1 : (67 - v.leadingZeroBitCount) / 4
        let p = room(digits)
        for i in 0..<digits { p[digits - 1 - i] = hexDigitBytes[Int((v >> UInt64(4 * i)) & 15)] }
    }
    /// UTF-8 bytes as a JSON string, quoted and escaped (`JSONText.write`).
    public mutating func put(json u: UnsafeBufferPointer<UInt8>) {
        precondition(JSONText.maxLength(u.count) <= capacity - count, "a record outgrew the room computed for it")
        count += JSONText.write(u, to: base + count)
    }
}

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
    if a.unresidentBytes > 0 { out.append("\(human(a.unresidentBytes)) never written (zeros, or the file's own bytes)") }
    if a.belowStackPointerBytes > 0 { out.append("\(human(a.belowStackPointerBytes)) of stacks below the stack pointers") }
    let whole = a.residencyPerMapping ? " (pagemap unreadable without CAP_DAC_READ_SEARCH: mappings with any page in memory copied whole)" : ""
    return sideEffectsText(r) + "copied \(human(UInt64(r.copiedBytes))) (heap and \(human(a.copiedBytes)) besides)" + (out.isEmpty ? "" : "; not copied: " + out.joined(separator: ", ")) + whole
}

/// What stopping did to the target that it can notice, one line each ("" if nothing).
public func sideEffectsText(_ r: HeapReport) -> String {
    r.sideEffects.map { "side effect: \($0)\n" }.joined()
}

/// The same as JSON members `side_effects` and `copy`, or nothing when only the heap was copied.
public func copyFields(_ r: HeapReport, into o: inout JSONWriter) {
    guard let a = r.beyondHeap else { return }
    o.field("side_effects", strings: r.sideEffects)
    o.object("copy") { c in
        c.field("copied_bytes", r.copiedBytes); c.field("beyond_heap_bytes", a.copiedBytes); c.field("shared_not_copied_bytes", a.sharedBytes)
        c.field("unresident_not_copied_bytes", a.unresidentBytes); c.field("below_stack_pointer_bytes", a.belowStackPointerBytes)
        c.field("residency", a.residencyPerMapping ? "mapping" : "page")
    }
}

/// The walk's warnings as a JSON array member.
public func warningFields(_ r: HeapReport, into o: inout JSONWriter) {
    o.array("warnings") { a in
        for w in r.warnings { a.object { $0.field("kind", w.kind.rawValue); $0.field("address", hex: w.address); $0.field("message", w.message) } }
    }
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
        s += ", copied \(human(UInt64(r.copiedBytes)))\(r.spilledTo.map { " (into a file in \($0))" } ?? ""), analysed in \(format1(Double(r.analysisMicroseconds) / 1000)) ms\n"
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
        if let m = r.memory { s += "\n" + memoryText(m) }
        s += "\nmallinfo2 (what the target's own mallinfo2() returns; chunks in per-thread caches count as in use):\n  "
        s += r.mallinfo2.fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ") + "\n"
        if !r.warnings.isEmpty {
            s += "\nwarnings (\(r.warnings.count)):\n"
            for w in r.warnings.prefix(50) { s += "  [\(w.kind.rawValue)] \(w.message)\n" }
            if r.warnings.count > 50 { s += "  ... \(r.warnings.count - 50) more (see --json)\n" }
        }
        return s
    }

    static func tally(_ k: StaticString, _ t: Tally, into o: inout JSONWriter) { o.object(k) { $0.field("chunks", t.count); $0.field("bytes", t.bytes) } }
    static func threads(_ k: StaticString, _ t: Tally, into o: inout JSONWriter) { o.object(k) { $0.field("threads", t.count); $0.field("bytes", t.bytes) } }

    public static func json(_ r: HeapReport) -> String {
        JSONWriter.documentLine { o in
            o.field("pid", r.pid); o.field("core_file", r.coreFile); o.field("pause_us", r.pauseMicroseconds); o.field("attempts", r.attempts)
            o.array("attempt_pause_us") { a in for p in r.attemptPauses { a.value(p) } }
            o.field("max_stop_us", r.stopBudgetMicroseconds)
            o.field("side_effects", strings: r.sideEffects)
            o.field("glibc_version", r.allocatorVersion); o.field("discovery", r.discovery)
            o.field("copied_bytes", r.copiedBytes); o.field("analysis_us", r.analysisMicroseconds); o.field("threads", r.threads.count)
            o.field("buffer_fault_us", r.bufferFaultMicroseconds); o.field("spill_dir", r.spilledTo)
            o.field("peak_rss_kb", peakRSSKilobytes())
            o.array("arenas") { list in
                for a in r.arenas {
                    list.object { x in
                        x.field("index", a.index); x.field("address", hex(a.address)); x.field("main", a.isMain)
                        x.field("system_bytes", a.systemBytes); x.field("attached_threads", a.attachedThreads); x.field("mutex_held", a.mutexHeld)
                        x.field("top", hex(a.top)); x.field("top_bytes", a.topSize)
                        x.array("segments") { g in for seg in a.segments { g.array { $0.value(hex(seg.start)); $0.value(hex(seg.end)) } } }
                        x.object("states") { st in
                            for k in r.kinds.all { if let t = a.byKind[k] { st.object(dynamic: r.kinds.name(k)) { $0.field("chunks", t.count); $0.field("bytes", t.bytes) } } }
                        }
                    }
                }
            }
            tally("mmapped", r.mmapped, into: &o)
            if let ex = r.heap.exitedThreads {
                o.object("exited_threads") { e in
                    threads("unjoined", r.heap.exitedTally(.unjoined), into: &e); threads("cached", r.heap.exitedTally(.cached), into: &e)
                    e.array("stacks") { a in
                        for x in ex {
                            a.object { $0.field("descriptor", hex(x.descriptor)); $0.field("start", hex(x.start)); $0.field("end", hex(x.end)); $0.field("state", x.state == .unjoined ? "unjoined" : "cached") }
                        }
                    }
                }
            } else { o.null("exited_threads") }
            let t = r.totals
            o.object("totals") { x in for k in r.kinds.all { let v = t[k] ?? Tally(); x.object(dynamic: r.kinds.name(k)) { $0.field("chunks", v.count); $0.field("bytes", v.bytes) } } }
            o.object("mallinfo2") { m in for (k, v) in r.mallinfo2.fields { m.field(dynamic: k, UInt64(v)) } }
            if let m = r.memory { memoryJSON(m, into: &o) } else { o.null("memory") }
            warningFields(r, into: &o)
        }
    }
}

extension StatFormat {
    /// Where the resident memory went: one line per holder, summing to RSS.
    public static func memoryText(_ m: MemoryAccount) -> String {
        var s = "resident memory (RSS \(human(m.rss)), PSS \(human(m.pss)), swap \(human(m.swap)); from smaps\(m.pageLevel ? " and pagemap, page by page" : ""), before the stop):\n"
        s += "  \(pad("rss", 10)) \(pad("pss", 10)) \(pad("swap", 10))  share  held by\n"
        for l in m.lines {
            let share = m.rss > 0 ? 100 * Double(l.rss) / Double(m.rss) : 0
            let name = l.name.isEmpty ? l.id : l.name
            s += "  \(pad(signedHumanIfNegative(l.rss), 10)) \(pad(signedHumanIfNegative(l.pss), 10)) \(pad(signedHumanIfNegative(l.swap), 10)) \(pad(format1(share) + "%", 6))  \(name)\n"
            if l.id == "malloc_top", m.trimmable > 0 { s += "  \(pad("", 10)) \(pad("", 10)) \(pad("", 10)) \(pad("", 6))    of the free memory, malloc_trim(0) would return \(human(m.trimmable))\n" }
        }
        return s
    }

    static func signedHumanIfNegative(_ v: Int64) -> String { v < 0 ? "-" + human(v.magnitude) : human(UInt64(v)) }

    public static func memoryJSON(_ m: MemoryAccount, into o: inout JSONWriter) {
        o.object("memory") { x in
            x.field("rss_bytes", m.rss); x.field("pss_bytes", m.pss); x.field("swap_bytes", m.swap)
            x.field("page_level", m.pageLevel); x.field("trimmable_bytes", m.trimmable)
            x.array("lines") { a in
                for l in m.lines {
                    a.object { $0.field("id", l.id); $0.field("name", l.name.isEmpty ? nil : l.name); $0.field("rss_bytes", l.rss)
                        $0.field("pss_bytes", l.pss); $0.field("swap_bytes", l.swap); $0.field("mappings", l.mappings) }
                }
            }
        }
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
        out.write(pad("chunk", 16) + " " + pad("header", 16) + " " + pad("size", 10) + " " + pad("usable", 10) + " " + pad("arena", 5) + "  "
                  + (types == nil ? "state\n" : pad("state", 15, left: true) + " type\n"))
        for i in rows {
            let arena = t.arena[i] == ChunkTable.noArena ? "-" : String(t.arena[i])
            out.write(pad(hex(t.userAddress(i)), 16) + " " + pad(hex(t.address[i]), 16) + " " + pad(String(t.size[i]), 10) + " "
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

    public static func json(_ r: HeapReport, rows: [Int], types: TypeInspection? = nil, into j: inout JSONWriter) {
        let t = r.chunks
        let block = blockOfChunk(types, count: t.count)
        j.document { o in
            o.field("pid", r.pid); o.field("pause_us", r.pauseMicroseconds); o.field("heap_chunks", t.count)
            o.array("chunks") { a in
                for i in rows {
                    a.object { c in
                        c.field("chunk", hex: t.userAddress(i)); c.field("header", hex: t.address[i]); c.field("size", t.size[i])
                        c.field("usable", t.usableSize(i))
                        if t.arena[i] == ChunkTable.noArena { c.null("arena") } else { c.field("arena", t.arena[i]) }
                        c.field("state", t.kindName(i))
                        if let ty = types {
                            let k = Int(block[i])
                            let label = k >= 0 ? ty.label(k) : nil
                            c.field("type", label); c.field("confidence", label == nil ? "unknown" : ty.confidence(k).name)
                            c.field("ambiguous", k >= 0 && ty.labels.ambiguous[k])
                        }
                    }
                    a.out.flushIfFull()
                }
            }
            warningFields(r, into: &o)
        }
        j.endLine()
    }
}

/// heapscope's own peak resident memory, in KiB (VmHWM; see ProcFS.ownMemoryKilobytes).
public func peakRSSKilobytes() -> Int { ProcFS.ownMemoryKilobytes().peak }

/// The last component of a path.
public func basename(_ p: String) -> String { p.split(separator: "/").last.map(String.init) ?? p }
