import Glibc

/// Interned names and paths of the resolver: each distinct string once, as a String and as
/// NUL-free UTF-8 bytes at a fixed address. Resolutions and frames hold 32-bit ids instead of
/// Strings, so building, copying and dropping millions of them costs no reference counting, and
/// printers copy bytes straight from here.
///
/// Interning happens under `SymbolSession.lock`; reading an id that a finished resolution handed
/// out needs no lock (entries never move: they live in fixed blocks, never freed). The pool lives
/// as long as the process and grows with the distinct names of the modules resolved in it.
public final class StringPool: @unchecked Sendable {
    public static let shared = StringPool()
    public static let none: Int32 = -1

    private static let blockBits = 14
    private static let blockSize = 1 << blockBits
    private static let maxBlocks = 1 << 16           // 2^30 strings at most

    /// `json`: the string as a JSON string (quoted, escaped), so JSON printers copy it as it is.
    private struct Entry { var bytes: UnsafePointer<UInt8>; var count: Int; var string: String; var json: UnsafePointer<UInt8>; var jsonCount: Int }
    private let blocks: UnsafeMutablePointer<UnsafeMutablePointer<Entry>?>
    private var ids: [String: Int32] = [:]
    private var count: Int32 = 0

    private init() {
        blocks = .allocate(capacity: StringPool.maxBlocks)
        blocks.initialize(repeating: nil, count: StringPool.maxBlocks)
    }

    /// The id of `s` (added on first sight). Call under `SymbolSession.lock`.
    public func intern(_ s: String) -> Int32 {
        if let id = ids[s] { return id }
        let id = count
        let b = Int(id) >> StringPool.blockBits
        precondition(b < StringPool.maxBlocks, "string pool full")
        if blocks[b] == nil { blocks[b] = .allocate(capacity: StringPool.blockSize) }
        var copy = s
        let bytes: UnsafePointer<UInt8> = copy.withUTF8 { u in
            let p = UnsafeMutablePointer<UInt8>.allocate(capacity: max(u.count, 1))
            if let base = u.baseAddress { p.initialize(from: base, count: u.count) }
            return UnsafePointer(p)
        }
        var quoted: [UInt8] = []
        JSONText.append(UnsafeBufferPointer(start: bytes, count: s.utf8.count), to: &quoted)
        let json = UnsafeMutablePointer<UInt8>.allocate(capacity: quoted.count)
        json.initialize(from: quoted, count: quoted.count)
        (blocks[b]! + (Int(id) & (StringPool.blockSize - 1))).initialize(
            to: Entry(bytes: bytes, count: s.utf8.count, string: s, json: UnsafePointer(json), jsonCount: quoted.count))
        count += 1
        ids[s] = id
        return id
    }

    @inline(__always) private func entry(_ id: Int32) -> UnsafeMutablePointer<Entry> {
        blocks[Int(id) >> StringPool.blockBits]! + (Int(id) & (StringPool.blockSize - 1))
    }

    /// The string of an id; nil for `StringPool.none`.
    public func string(_ id: Int32) -> String? { id < 0 ? nil : entry(id).pointee.string }

    /// The id's string as a JSON string, quotes included (valid for the life of the process).
    @inline(__always) public func jsonUTF8(_ id: Int32) -> UnsafeBufferPointer<UInt8> {
        let e = entry(id)
        return UnsafeBufferPointer(start: e.pointee.json, count: e.pointee.jsonCount)
    }

    /// The UTF-8 bytes of an id (valid for the life of the process).
    @inline(__always) public func utf8(_ id: Int32) -> UnsafeBufferPointer<UInt8> {
        let e = entry(id)
        return UnsafeBufferPointer(start: e.pointee.bytes, count: e.pointee.count)
    }
}
