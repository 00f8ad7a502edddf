import Inspect

/// The one way heapscope writes JSON: keyed fields into an OutputBuffer, commas and quoting done
/// here. Keys are static strings (written as they are, never escaped); values are numbers, bools,
/// strings (escaped), hex addresses (as "0x..." strings), null, or nested objects and arrays.
///
///     var j = JSONWriter(&out)            // or JSONWriter() and j.out at the end
///     j.object {
///         $0.field("pid", r.pid)
///         $0.array("chunks") { a in for c in list { a.object { $0.field("size", c) } } }
///     }
public struct JSONWriter {
    public var out: OutputBuffer
    /// Whether the innermost open object or array has a member yet (a comma comes before the next).
    private var hasMember: [Bool] = []

    public init(capacity: Int = 1 << 16) { out = OutputBuffer(capacity: capacity) }

    private mutating func separate() {
        if let last = hasMember.last {
            if last { out.write(byte: 0x2c) } else { hasMember[hasMember.count - 1] = true }
        }
    }
    private mutating func key(_ k: StaticString) {
        separate()
        out.write(byte: 0x22)
        out.write(utf8: UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
        out.write(byte: 0x22); out.write(byte: 0x3a)
    }
    /// A key known only at run time (a map's keys: kind names, mallinfo2 fields), escaped.
    private mutating func key(dynamic k: String) {
        separate()
        out.write(json: k)
        out.write(byte: 0x3a)
    }

    // Values (in an array, or after a key).
    public mutating func value(_ v: UInt64) { separate(); out.write(decimal: v) }
    public mutating func value(_ v: Int) { separate(); writeInt(Int64(v)) }
    public mutating func value(_ v: String?) { separate(); out.write(json: v) }
    public mutating func value(hex v: UInt64) { separate(); out.write(byte: 0x22); out.write(hex: v); out.write(byte: 0x22) }
    private mutating func writeInt(_ v: Int64) {
        if v < 0 { out.write(byte: 0x2d) }
        out.write(decimal: v.magnitude)
    }

    // Fields of an object.
    public mutating func field(_ k: StaticString, _ v: UInt64) { key(k); out.write(decimal: v) }
    public mutating func field(_ k: StaticString, _ v: UInt32) { key(k); out.write(decimal: UInt64(v)) }
    public mutating func field(_ k: StaticString, _ v: UInt16) { key(k); out.write(decimal: UInt64(v)) }
    public mutating func field(_ k: StaticString, _ v: Int) { key(k); writeInt(Int64(v)) }
    public mutating func field(_ k: StaticString, _ v: Int32) { key(k); writeInt(Int64(v)) }
    public mutating func field(_ k: StaticString, _ v: Int64) { key(k); writeInt(v) }
    public mutating func field(_ k: StaticString, _ v: Int?) { key(k); if let v { writeInt(Int64(v)) } else { null() } }
    public mutating func field(_ k: StaticString, _ v: UInt64?) { key(k); if let v { out.write(decimal: v) } else { null() } }
    public mutating func field(_ k: StaticString, _ v: Bool) { key(k); out.write(v ? "true" : "false") }
    public mutating func field(_ k: StaticString, _ v: String?) { key(k); out.write(json: v) }
    /// A number with at most three decimals (seconds, percentages, slopes); null if not finite.
    public mutating func field(_ k: StaticString, _ v: Double?) {
        key(k)
        guard let v, v.isFinite else { null(); return }
        out.write(decimal3(v))
    }
    public mutating func field(_ k: StaticString, hex v: UInt64?) {
        key(k)
        guard let v else { null(); return }
        out.write(byte: 0x22); out.write(hex: v); out.write(byte: 0x22)
    }
    public mutating func field(dynamic k: String, _ v: UInt64) { key(dynamic: k); out.write(decimal: v) }
    public mutating func field(_ k: StaticString, strings: [String]) { array(k) { a in for s in strings { a.value(s) } } }
    private mutating func null() { out.write("null") }
    /// A field whose value is null.
    public mutating func null(_ k: StaticString) { key(k); null() }

    // Nesting.
    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        separate()
        open(0x7b); body(&self); close(0x7d)
    }
    public mutating func object(_ k: StaticString, _ body: (inout JSONWriter) -> Void) {
        key(k); open(0x7b); body(&self); close(0x7d)
    }
    public mutating func object(dynamic k: String, _ body: (inout JSONWriter) -> Void) {
        key(dynamic: k); open(0x7b); body(&self); close(0x7d)
    }
    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        separate()
        open(0x5b); body(&self); close(0x5d)
    }
    public mutating func array(_ k: StaticString, _ body: (inout JSONWriter) -> Void) {
        key(k); open(0x5b); body(&self); close(0x5d)
    }
    private mutating func open(_ b: UInt8) { out.write(byte: b); hasMember.append(false) }
    private mutating func close(_ b: UInt8) { out.write(byte: b); hasMember.removeLast() }

    /// End of one JSON document (a line of its own); flushes when a megabyte is buffered.
    public mutating func endLine() { out.write(byte: 0x0a); out.flushIfFull() }
    /// Write what is buffered to standard output.
    public mutating func flush() { out.flush() }
    /// The buffered text (for callers that print it themselves).
    public var text: String { String(decoding: out.bytes, as: UTF8.self) }

    /// One object as a line of text (`document`: one that begins with the version and schema).
    public static func line(document: Bool = false, _ body: (inout JSONWriter) -> Void) -> String {
        var j = JSONWriter(capacity: 256)
        j.out.autoFlush = false
        if document { j.document(body) } else { j.object(body) }
        j.endLine()
        return j.text
    }

    /// The version of the JSON documents' shape: raised when a key is renamed or removed or
    /// changes meaning (new keys do not raise it).
    public static let schema = 2

    /// A top-level document: an object that begins with `heapscope_version` and `schema`.
    public mutating func document(_ body: (inout JSONWriter) -> Void) {
        object { o in
            o.field("heapscope_version", HeapscopeVersion.number)
            o.field("schema", JSONWriter.schema)
            body(&o)
        }
    }
    /// A top-level document as a line of text.
    public static func documentLine(_ body: (inout JSONWriter) -> Void) -> String { line(document: true, body) }
}

/// A number with at most three decimals, as JSON prints seconds and rates (1, 1.5, 0.125).
public func decimal3(_ v: Double) -> String {
    let r = (v * 1000).rounded() / 1000
    return r == r.rounded() && abs(r) < 9e15 ? String(Int64(r)) : String(r)
}
