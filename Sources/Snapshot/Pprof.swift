import CZlib
import Glibc

/// pprof's profile.proto (github.com/google/pprof, proto/profile.proto), written by hand: the
/// few messages a heap profile needs. Every frame is one Function and one Location with the same
/// id; samples list their locations leaf first, as pprof expects.
public struct PprofProfile: Sendable {
    public var sampleTypes: [(type: String, unit: String)]
    public var frames: [String] = []
    /// Stack as frame indexes, leaf first; one value per sample type.
    public var samples: [(stack: [Int], values: [Int64])] = []
    public var timeNanos: Int64 = 0
    public var comments: [String] = []
    public var defaultSampleType: String?

    public init(sampleTypes: [(type: String, unit: String)]) { self.sampleTypes = sampleTypes }

    /// The uncompressed protobuf bytes.
    public func encode() -> [UInt8] {
        var strings: [String] = [""], ids: [String: Int64] = ["": 0]
        func str(_ s: String) -> Int64 {
            if let i = ids[s] { return i }
            strings.append(s); ids[s] = Int64(strings.count - 1); return Int64(strings.count - 1)
        }
        var out = ProtoWriter()
        for t in sampleTypes {
            var m = ProtoWriter(); m.int(1, str(t.type)); m.int(2, str(t.unit)); out.message(1, m)
        }
        for s in samples {
            var m = ProtoWriter()
            m.packed(1, s.stack.map { UInt64($0 + 1) })
            m.packed(2, s.values.map { UInt64(bitPattern: $0) })
            out.message(2, m)
        }
        for i in frames.indices {
            var loc = ProtoWriter(), line = ProtoWriter()
            line.int(1, Int64(i + 1))
            loc.int(1, Int64(i + 1)); loc.message(4, line)
            out.message(4, loc)
        }
        for (i, f) in frames.enumerated() {
            var fn = ProtoWriter(); fn.int(1, Int64(i + 1)); fn.int(2, str(f)); fn.int(3, str(f))
            out.message(5, fn)
        }
        let comments = comments.map(str), deflt = defaultSampleType.map(str)
        let pt = sampleTypes.last.map { (str($0.type), str($0.unit)) }
        for s in strings { out.bytes(6, Array(s.utf8)) }
        if timeNanos != 0 { out.int(9, timeNanos) }
        if let pt { var m = ProtoWriter(); m.int(1, pt.0); m.int(2, pt.1); out.message(11, m) }
        for c in comments { out.int(13, c) }
        if let d = deflt { out.int(14, d) }
        return out.bytes
    }

    /// Write the profile gzipped (as pprof reads it), mode 0600.
    public func write(to file: OutputFile) throws(SnapshotError) {
        guard let gz = gzip(encode()) else { throw .io(path: file.path, errno: EIO, doing: "compress") }
        try file.write(gz)
    }
}

/// gzip (RFC 1952) of `data` with zlib.
public func gzip(_ data: [UInt8]) -> [UInt8]? {
    var s = z_stream()
    // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
    guard deflateInit2_(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                        ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
    defer { deflateEnd(&s) }
    var out = [UInt8](repeating: 0, count: Int(deflateBound(&s, UInt(data.count))) + 32)
    var input = data
    let status: Int32 = input.withUnsafeMutableBufferPointer { inp in
        out.withUnsafeMutableBufferPointer { o in
            s.next_in = inp.baseAddress; s.avail_in = UInt32(inp.count)
            s.next_out = o.baseAddress; s.avail_out = UInt32(o.count)
            return deflate(&s, Z_FINISH)
        }
    }
    guard status == Z_STREAM_END else { return nil }
    out.removeLast(out.count - Int(s.total_out))
    return out
}

/// Protocol-buffer wire format: varints (type 0) and length-delimited fields (type 2).
struct ProtoWriter {
    var bytes: [UInt8] = []
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func int(_ field: Int, _ v: Int64) { varint(UInt64(field << 3)); varint(UInt64(bitPattern: v)) }
    mutating func bytes(_ field: Int, _ b: [UInt8]) { varint(UInt64(field << 3 | 2)); varint(UInt64(b.count)); bytes += b }
    mutating func message(_ field: Int, _ m: ProtoWriter) { bytes(field, m.bytes) }
    mutating func packed(_ field: Int, _ vs: [UInt64]) {
        var m = ProtoWriter()
        for v in vs { m.varint(v) }
        bytes(field, m.bytes)
    }
}
