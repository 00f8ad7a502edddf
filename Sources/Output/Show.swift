import HeapModel
import Inspect
import Symbols

/// `heapscope show`: one chunk, its fields decoded by name from its type's layout (pointers say
/// what they point to: a symbol, or a chunk and its type), then a hex dump.
public enum ShowFormat {
    /// Write the chunk holding `a` (at most `bytes` of it) as text or JSON; the reason when `a`
    /// is in no chunk.
    /// `name`: the snapshot file's, for saying it holds no contents.
    public static func write(_ r: TypeInspection, address a: UInt64, bytes: Int, json: Bool, name: String,
                             into out: inout OutputBuffer) throws(Failure) {
            if r.fromSnapshot && r.memory.regions.isEmpty {
                throw Failure(.otherError, "\(name) holds no chunk contents (take it with heapscope snapshot --contents)")
            }
            let t = r.heap.chunks
            guard let i = t.index(containing: a) else { throw Failure(.otherError, "\(hex(a)) is not in the heap (no chunk holds it)") }
            let user = t.userAddress(i), usable = t.usableSize(i)
            let block = r.blocks.block(containing: user)
            let type = block.flatMap { k in r.label(k).map { ($0, r.confidence(k).name) } }
            let n = Int(min(usable, UInt64(max(bytes, 0))))
            let content = r.memory.bytes(user, count: n) ?? []
            func word(_ off: Int, _ size: Int = 8) -> UInt64 {
                guard off >= 0, off + size <= content.count else { return 0 }
                var v: UInt64 = 0
                for k in 0..<size { v |= UInt64(content[off + k]) << (8 * UInt64(k)) }
                return v
            }
            // Fields of a typed chunk: its type's layout, once per element.
            let table = r.labels.table
            var fields: [(offset: Int, path: String, type: Int32, bitSize: UInt8)] = []
            // A chunk of 1-byte elements (char[], a string's buffer) is one field: its text.
            var isText = false
            if let k = block, r.labels.type[k] >= 0, table.strip(r.labels.type[k]) >= 0,
               table[table.strip(r.labels.type[k])].kind == .base, table.size(r.labels.type[k]) == 1 {
                isText = true
                fields.append((0, "(text)", r.labels.type[k], 0))
            } else if let k = block, r.labels.type[k] >= 0, table.size(r.labels.type[k]) > 0 {
                let ty = r.labels.type[k], es = table.size(ty), count = r.labels.count[k]
                for e in 0..<UInt64(count) where e * es < UInt64(n) && fields.count < 512 {
                    for f in table.fields(of: ty, bytes: UInt64(n) - e * es) {
                        fields.append((Int(e * es + f.offset), (count > 1 ? "[\(e)]" : "") + (f.path.isEmpty || count <= 1 ? f.path : (f.path.hasPrefix("[") ? f.path : "." + f.path)), f.type, f.bitSize))
                    }
                }
            }
            // Words: pointers into chunks (with their type), into modules (symbols), or text.
            var words: [(offset: Int, value: UInt64)] = []
            var off = 0
            while off + 8 <= content.count { words.append((off, word(off))); off += 8 }
            let inModule = words.filter { w in r.maps.contains { $0.path.hasPrefix("/") && $0.contains(w.value) } }.map(\.value)
            var symbols: [UInt64: String] = [:]
            if !inModule.isEmpty, let s = r.symbols {
                for (v, res) in zip(inModule, s.resolve(inModule)) {
                    if let sym = res.symbol { symbols[v] = res.offset == 0 ? sym : "\(sym)+0x\(String(res.offset, radix: 16))" }
                }
            }
            func meaning(_ v: UInt64) -> String? {
                if let s = symbols[v] { return s }
                if let j = t.index(containing: v), t.state(j) != .top {
                    let u = t.userAddress(j)
                    let ty = r.blocks.block(containing: v).flatMap { r.label($0).map { " " + $0 } } ?? ""
                    return "chunk \(hex(u))\(v == u ? "" : " +0x" + String(v &- u, radix: 16)) (\(t.kindName(j))\(ty))"
                }
                return nil
            }
            /// A field's value as C would print it.
            func value(_ f: (offset: Int, path: String, type: Int32, bitSize: UInt8)) -> (String, UInt64?) {
                if isText {
                    let text = content.prefix { $0 != 0 }
                    return ("\"" + String(decoding: text.prefix(256).map { $0 >= 0x20 && $0 < 0x7f ? $0 : UInt8(ascii: ".") }, as: UTF8.self) + (text.count > 256 ? "..." : "") + "\"", nil)
                }
                let s = table.strip(f.type)
                guard s >= 0 else { return ("?", nil) }
                let e = table[s]
                let size = Int(e.size)
                if f.bitSize > 0 { return ("(\(f.bitSize)-bit field)", nil) }
                guard size > 0, f.offset + min(size, 8) <= content.count else { return ("", nil) }
                switch e.kind {
                case .pointer:
                    return (hex(word(f.offset)), word(f.offset))
                case .array:   // char arrays
                    let bytes = content[f.offset..<min(content.count, f.offset + size)]
                    let text = bytes.prefix { $0 != 0 }
                    return ("\"" + String(decoding: text.prefix(64).map { $0 >= 0x20 && $0 < 0x7f ? $0 : UInt8(ascii: ".") }, as: UTF8.self) + (text.count > 64 ? "..." : "") + "\"", nil)
                case .base, .enumeration:
                    let v = word(f.offset, min(size, 8))
                    switch (e.encoding, size) {
                    case (4, 4): return (String(Float(bitPattern: UInt32(truncatingIfNeeded: v))), nil)
                    case (4, 8): return (String(Double(bitPattern: v)), nil)
                    case (2, _): return (v != 0 ? "true" : "false", nil)
                    case (let enc, _) where enc == 5 || enc == 6 || (enc == 0 && e.kind == .enumeration):   // signed, signed char, enum
                        let shift = UInt64(64 - 8 * min(size, 8))
                        let signed = Int64(bitPattern: v << shift) >> Int64(shift)
                        return (e.encoding == 6 && size == 1 && v >= 0x20 && v < 0x7f ? "\(signed) '\(Character(UnicodeScalar(UInt8(v))))'" : String(signed), nil)
                    default: return (String(v), nil)
                    }
                default:
                    return ("", nil)
                }
            }
            let owner = block.flatMap { r.owner($0) }
            if json {
                var j = JSONWriter(capacity: 4096)
                j.out.autoFlush = false
                j.document { o in
                    o.field("address", hex: a); o.field("chunk", hex: user); o.field("header", hex: t.address[i]); o.field("size", t.size[i])
                    o.field("usable", usable); o.field("state", t.kindName(i)); o.field("type", type?.0); o.field("confidence", type?.1)
                    o.field("owner", owner)
                    o.array("fields") { list in
                        for f in fields {
                            let (v, p) = value(f)
                            list.object { $0.field("offset", f.offset); $0.field("name", f.path); $0.field("type", table.name(f.type)); $0.field("value", v); $0.field("points_to", p.flatMap(meaning)) }
                        }
                    }
                    o.array("words") { list in
                        for w in words { list.object { $0.field("offset", w.offset); $0.field("value", hex: w.value); $0.field("points_to", meaning(w.value)) } }
                    }
                }
                j.endLine()
                out.write(utf8Bytes: j.out.bytes)
            } else {
                out.write("chunk \(hex(user)) (header \(hex(t.address[i]))): \(t.size[i]) bytes, \(usable) usable, \(t.kindName(i))")
                out.write(type.map { ", type \($0.0) (\($0.1))" } ?? ", type unknown")
                out.write(owner.map { ", owner \($0)\n" } ?? "\n")
                if !fields.isEmpty {
                    let tw = min(28, fields.map { table.name($0.type).count }.max() ?? 0), nw = min(24, fields.map(\.path.count).max() ?? 0)
                    for f in fields {
                        let (v, p) = value(f)
                        out.write("  +0x\(pad(String(f.offset, radix: 16), 3, left: true)) \(pad(table.name(f.type), tw, left: true)) \(pad(f.path, nw, left: true)) = \(v)")
                        out.write(p.flatMap(meaning).map { " -> \($0)\n" } ?? "\n")
                    }
                } else {
                    for w in words {
                        guard let m = meaning(w.value) else { continue }
                        out.write("  +0x\(pad(String(w.offset, radix: 16), 3, left: true)) \(hex(w.value)) -> \(m)\n")
                    }
                }
                let hexd = Array("0123456789abcdef")
                var line = 0
                while line < content.count {
                    let row = content[line..<min(line + 16, content.count)]
                    var h = "", s = ""
                    for (k, x) in row.enumerated() {
                        if k == 8 { h += " " }
                        h.append(hexd[Int(x >> 4)]); h.append(hexd[Int(x & 15)]); h += " "
                        s.append(x >= 0x20 && x < 0x7f ? Character(UnicodeScalar(x)) : ".")
                    }
                    out.write("  \(hex(user + UInt64(line)))  \(pad(h, 49, left: true)) |\(s)|\n")
                    line += 16
                }
                if UInt64(n) < usable { out.write("  ... \(usable - UInt64(n)) more bytes (--bytes)\n") }
            }
    }
}
