/// Declared types as the analyses see them: a flat table built from a program's debug info
/// (DWARF), independent of where it came from. Index -1 is `void` / unknown everywhere.
public struct TypeTable: Sendable {
    public enum Kind: UInt8, Sendable {
        case base, pointer, structure, union, array, function, enumeration, typedef, qualified
    }
    public struct Member: Sendable {
        public var name: String
        public var offset: UInt64
        public var type: Int32
        /// A base class (C++ inheritance) rather than a data member.
        public var isBase: Bool
        /// Bit-field: width in bits (0 = not a bit-field).
        public var bitSize: UInt8
        public init(name: String, offset: UInt64, type: Int32, isBase: Bool = false, bitSize: UInt8 = 0) {
            self.name = name; self.offset = offset; self.type = type; self.isBase = isBase; self.bitSize = bitSize
        }
    }
    public struct Entry: Sendable {
        public var kind: Kind
        /// As a C or C++ programmer writes it: "struct node", "shapes::Circle", "char*", "long[4]".
        public var name: String
        public var size: UInt64
        /// pointer, array, typedef, qualified: the type it refers to (-1: void).
        public var target: Int32
        /// array: element count (0: unknown or flexible).
        public var count: UInt64
        public var members: [Member]
        /// base: DWARF encoding (DW_ATE_*: 2 boolean, 4 float, 5 signed, 6 signed char, 7 unsigned, 8 unsigned char).
        public var encoding: UInt8
        /// structure: node types it declares (a typedef member naming `D` or `D*`, D deriving at
        /// offset 0 from a base B): its B* pointers point to D's (std::map's _Link_type, std::list's _Node).
        public var nodes: [Int32] = []
        public init(kind: Kind, name: String, size: UInt64, target: Int32 = -1, count: UInt64 = 0,
                    members: [Member] = [], encoding: UInt8 = 0) {
            self.kind = kind; self.name = name; self.size = size; self.target = target; self.count = count
            self.members = members; self.encoding = encoding
        }
    }

    public private(set) var entries: [Entry] = []
    public init() {}

    public var count: Int { entries.count }
    public subscript(_ i: Int32) -> Entry { entries[Int(i)] }

    @discardableResult
    public mutating func add(_ e: Entry) -> Int32 {
        entries.append(e)
        return Int32(entries.count - 1)
    }
    public mutating func update(_ i: Int32, _ body: (inout Entry) -> Void) { body(&entries[Int(i)]) }

    /// The type behind typedefs and const/volatile; -1 (void) when the chain ends in void, in an
    /// entry still being read (a typedef met again through its own members), or out of the table.
    public func strip(_ t: Int32) -> Int32 {
        var t = t, n = 0
        while t >= 0, Int(t) < entries.count, n < 64, entries[Int(t)].kind == .typedef || entries[Int(t)].kind == .qualified {
            t = entries[Int(t)].target; n += 1
        }
        return t >= 0 && Int(t) < entries.count ? t : -1
    }

    public func name(_ t: Int32) -> String { t < 0 || Int(t) >= entries.count ? "void" : entries[Int(t)].name }
    public func size(_ t: Int32) -> UInt64 {
        let s = strip(t)
        return s < 0 ? 0 : entries[Int(s)].size
    }
}

/// A variable whose declared type is known: where the analyses start typing memory.
public struct TypedRoot: Sendable {
    public enum Location: Sendable, Equatable {
        /// The variable lives in memory at this address.
        case memory(UInt64)
        /// The variable's value (a register, or a computed value): only its pointee can be typed.
        case value(UInt64)
    }
    public enum Kind: UInt8, Sendable { case global, tls, local }
    public var location: Location
    public var type: Int32
    public var kind: Kind
    /// "list_head (main.c:12)", "tree in build_tree (thread 1234)".
    public var name: String
    public init(location: Location, type: Int32, kind: Kind, name: String) {
        self.location = location; self.type = type; self.kind = kind; self.name = name
    }
}

extension TypeTable {
    /// One leaf field of a type laid out in memory: "next", "pos.x", "items[2]", "Shape::id".
    public struct Field: Sendable {
        public var path: String
        public var offset: UInt64
        public var type: Int32
        public var bitSize: UInt8
    }

    /// The leaf fields of `t` (structs, unions and arrays flattened; union members overlap),
    /// at most `limit` of them and none at or beyond `bytes`.
    public func fields(of t: Int32, bytes: UInt64, limit: Int = 512) -> [Field] {
        var out: [Field] = []
        // A base class's members are named by that class ("shapes::Shape::id"), as in C++.
        func walk(_ t: Int32, _ path: String, _ base: String?, _ off: UInt64, _ bits: UInt8, _ depth: Int) {
            guard out.count < limit, off < bytes else { return }
            let s = strip(t)
            guard s >= 0, depth < 16 else { out.append(Field(path: path, offset: off, type: t, bitSize: bits)); return }
            let e = entries[Int(s)]
            if e.kind == .structure, let held = storedElement(s, named: { typeNamed($0) }) {
                walk(held, path, base, off, bits, depth + 1); return
            }
            switch e.kind {
            case .structure, .union where !e.members.isEmpty:
                for m in e.members {
                    if m.isBase { walk(m.type, path, m.name, off + m.offset, 0, depth + 1); continue }
                    let name = (base.map { $0 + "::" } ?? "") + m.name
                    // (an anonymous union or struct member adds no name)
                    walk(m.type, name.isEmpty ? path : path.isEmpty ? name : path + "." + name, nil, off + m.offset, m.bitSize, depth + 1)
                }
            case .array where e.count > 0 && size(e.target) > 0 && !(strip(e.target) >= 0 && entries[Int(strip(e.target))].kind == .base && size(e.target) == 1):
                for i in 0..<e.count { walk(e.target, path + "[\(i)]", nil, off + i * size(e.target), 0, depth + 1) }
            default:
                out.append(Field(path: path, offset: off, type: t, bitSize: bits))
            }
        }
        walk(t, "", nil, 0, 0, 0)
        return out
    }
}

extension TypeTable {
    /// The template arguments of a C++ name as DWARF spells it: "std::pair<int const, Item*>"
    /// gives ["int const", "Item*"]; nil when the name has none.
    public static func templateArguments(_ name: String) -> [String]? {
        let u = Array(name.utf8)
        guard let open = u.firstIndex(of: UInt8(ascii: "<")), u.last == UInt8(ascii: ">") else { return nil }
        var args: [String] = [], depth = 0, start = open + 1
        for i in (open + 1)..<(u.count - 1) {
            switch u[i] {
            case UInt8(ascii: "<"), UInt8(ascii: "("): depth += 1
            case UInt8(ascii: ">"), UInt8(ascii: ")"): depth -= 1
            case UInt8(ascii: ",") where depth == 0:
                args.append(String(decoding: u[start..<i], as: UTF8.self).trimmingSpaces()); start = i + 1
            default: break
            }
            if depth < 0 { return nil }
        }
        args.append(String(decoding: u[start..<(u.count - 1)], as: UTF8.self).trimmingSpaces())
        return args
    }

    /// The first entry named `name` that has a layout (a struct, union, class or base type of
    /// some size), else any entry of that name.
    public func typeNamed(_ name: String) -> Int32? {
        var any: Int32? = nil
        for (i, e) in entries.enumerated() where e.name == name {
            if e.kind != .typedef && e.kind != .qualified && e.size > 0 { return Int32(i) }
            if any == nil { any = Int32(i) }
        }
        return any
    }

    /// What a libstdc++ storage member holds: `__gnu_cxx::__aligned_buffer<T>` and
    /// `__aligned_membuf<T>` (a map's, list's or hash table's node value, a make_shared block's
    /// object) are raw bytes holding a T. `named` looks a type up by its name.
    public func storedElement(_ t: Int32, named: (String) -> Int32?) -> Int32? {
        guard t >= 0, Int(t) < entries.count, entries[Int(t)].kind == .structure else { return nil }
        let n = entries[Int(t)].name
        guard n.hasPrefix("__gnu_cxx::__aligned_buffer<") || n.hasPrefix("__gnu_cxx::__aligned_membuf<"),
              let arg = TypeTable.templateArguments(n)?.first, let e = named(arg), e != t else { return nil }
        return e
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// Element counts per block: a byte each (nearly all are 1), the rare count of 255 or more kept aside.
public struct CountColumn: RandomAccessCollection, Sendable, Equatable {
    @usableFromInline var small: [UInt8]
    @usableFromInline var big: [Int: UInt32] = [:]
    public init() { small = [] }
    public init(repeating v: UInt32, count n: Int) {
        small = .init(repeating: UInt8(Swift.min(v, 255)), count: n)
        if v >= 255 { for i in 0..<n { big[i] = v } }
    }
    public var startIndex: Int { 0 }
    public var endIndex: Int { small.count }
    @inlinable public subscript(i: Int) -> UInt32 {
        get { let s = small[i]; return s == 255 ? big[i] ?? 255 : UInt32(s) }
        set {
            if small[i] == 255 { big[i] = nil }
            if newValue >= 255 { small[i] = 255; big[i] = newValue } else { small[i] = UInt8(newValue) }
        }
    }
    /// More than one element (an array).
    @inlinable @inline(__always) public func isArray(_ i: Int) -> Bool { small[i] > 1 }
    public mutating func append(_ v: UInt32) { small.append(0); self[small.count - 1] = v }
    public mutating func reserveCapacity(_ n: Int) { small.reserveCapacity(n) }
    public static func == (a: CountColumn, b: CountColumn) -> Bool { a.elementsEqual(b) }
}
