/// One frame of a backtrace as other tools print it, pasted into `sym`:
///
///     ./prog(inner+0x1a) [0x55d4c3a1b1a9]                  glibc backtrace_symbols(_fd)
///     /lib/x86_64-linux-gnu/libc.so.6(+0x271ca) [0x7f…]
///     #1  0x000055d4c3a1b1e2 in middle () at frames.c:20    gdb bt
///     #2  0x00007f… in __libc_start_call_main () from /lib/x86_64-linux-gnu/libc.so.6
///     #1 0x55d4c3a1b1e2 in middle /src/frames.c:20           AddressSanitizer, symbolized
///     #1 0x55d4c3a1b1e2  (/src/frames+0x11e2)                AddressSanitizer, symbolize=0
///     ==123==    by 0x1091E2: middle (frames.c:20)          Valgrind
///     	    55d4c3a1b1e2 middle+0x1a (/src/frames)          perf script
///     libc.so.6+0x271ca  or  (libc.so.6+0x271ca)           a module and an offset
///
/// What the line gives: a run-time address, a module with an offset from its load bias, a
/// symbol with an offset, and whether the address is a return address (every frame of a
/// backtrace but the first: gdb resolves those at address − 1, so does `sym`; Valgrind prints
/// them less one already).
public struct PastedFrame: Equatable, Sendable {
    public enum Format: String, Sendable { case glibc, gdb, asan, valgrind, perf, module }
    public var format: Format
    /// The frame number the line gives ("#N"; valgrind's "at" is 0), nil if none.
    public var number: Int?
    public var address: UInt64?
    public var module: String?
    public var moduleOffset: UInt64?
    public var symbol: String?
    public var symbolOffset: UInt64?

    /// Where in its backtrace a frame is: frames of numbered formats by their number, the others
    /// by their place in a run of consecutive frame lines of the same format (the first is the
    /// innermost: not a return address).
    public struct Run: Sendable {
        var format: Format? = nil
        var position = 0
        public init() {}
        /// The frame's place in its backtrace (0: innermost); a non-frame line ends the run.
        public mutating func place(_ f: PastedFrame?) -> Int {
            guard let f else { format = nil; return 0 }
            if let n = f.number { format = f.format; position = n; return n }
            position = format == f.format ? position + 1 : 0
            format = f.format
            return position
        }
    }

    /// A frame, if the line is one of the formats above (plain addresses are not).
    public static func parse(_ line: String) -> PastedFrame? {
        let s = Substring(line).trimmingBlanks()
        guard !s.isEmpty else { return nil }
        // Valgrind prefixes every line with ==PID== (or --PID-- / **PID**).
        if let f = s.first, f == "=" || f == "-" || f == "*", s.hasPrefix(String(repeating: f, count: 2)) {
            let rest = s.dropFirst(2)
            let pid = rest.prefix(while: \.isNumber)
            if !pid.isEmpty, rest.dropFirst(pid.count).hasPrefix(String(repeating: f, count: 2)) {
                return valgrind(rest.dropFirst(pid.count + 2).trimmingBlanks())
            }
        }
        if s.hasPrefix("#") { return numbered(s) }
        if s.hasPrefix("at 0x") || s.hasPrefix("by 0x") { return valgrind(s) }
        if s.hasSuffix("]"), let open = s.lastIndex(of: "["), let a = hex(s[s.index(after: open)..<s.index(before: s.endIndex)]) {
            return glibc(s[..<open].trimmingBlanks(), address: a)
        }
        if let perf = perf(s) { return perf }
        // MODULE+0xOFF or (MODULE+0xOFF), one token.
        if !s.contains(" "), let (m, off) = moduleOffset(s.hasPrefix("(") && s.hasSuffix(")") ? s.dropFirst().dropLast() : s) {
            return PastedFrame(format: .module, module: m, moduleOffset: off)
        }
        return nil
    }

    /// gdb's and AddressSanitizer's "#N [ADDR] [in FUNC ...] [(MODULE+0xOFF)] [from MODULE]".
    static func numbered(_ s: Substring) -> PastedFrame? {
        var rest = s.dropFirst()
        let digits = rest.prefix(while: \.isNumber)
        guard !digits.isEmpty, digits.count <= 9, let n = Int(digits) else { return nil }
        rest = rest.dropFirst(digits.count).trimmingBlanks()
        var f = PastedFrame(format: .gdb, number: n)
        let token = rest.prefix { $0 != " " && $0 != "\t" }
        if token.hasPrefix("0x"), let a = hex(token) { f.address = a; rest = rest.dropFirst(token.count).trimmingBlanks() }
        if rest.hasSuffix(")"), let open = rest.lastIndex(of: "("),
           let (m, off) = moduleOffset(rest[rest.index(after: open)..<rest.index(before: rest.endIndex)]) {
            f.module = m; f.moduleOffset = off
        } else if let from = rest.lastRange(of: " from ") {
            let m = rest[from.upperBound...].trimmingBlanks()
            if !m.isEmpty && !m.contains(" ") { f.module = String(m) }
        }
        // gdb pads addresses to 16 digits; AddressSanitizer does not, and gives module offsets.
        if f.moduleOffset != nil || (f.address != nil && token.count != 18) { f.format = .asan }
        return f
    }

    /// Valgrind's "at 0xADDR: FUNC (FILE:LINE)" / "by 0xADDR: ??? (in MODULE)".
    static func valgrind(_ s: Substring) -> PastedFrame? {
        guard s.hasPrefix("at ") || s.hasPrefix("by ") else { return nil }
        let rest = s.dropFirst(3).trimmingBlanks()
        let token = rest.prefix { $0 != ":" && $0 != " " }
        guard token.hasPrefix("0x"), let a = hex(token) else { return nil }
        // "at" starts a stack ("by" frames count on from it). Valgrind prints a caller's return
        // address less one already: its frames need no adjusting.
        var f = PastedFrame(format: .valgrind, number: s.hasPrefix("at ") ? 0 : nil, address: a)
        if let inRange = rest.lastRange(of: "(in "), rest.hasSuffix(")") {
            let m = rest[inRange.upperBound..<rest.index(before: rest.endIndex)]
            if !m.isEmpty { f.module = String(m) }
        }
        return f
    }

    /// glibc's backtrace_symbols: "MODULE(SYMBOL+0xOFF)", "MODULE(+0xOFF)", "MODULE()" or
    /// "MODULE" before " [ADDR]".
    static func glibc(_ s: Substring, address: UInt64) -> PastedFrame? {
        var f = PastedFrame(format: .glibc, address: address)
        var module = s
        if s.hasSuffix(")"), let open = s.lastIndex(of: "(") {
            module = s[..<open]
            let inner = s[s.index(after: open)..<s.index(before: s.endIndex)]
            if inner.hasPrefix("+") {
                f.moduleOffset = hex(inner.dropFirst())
            } else if let plus = inner.lastRange(of: "+0x") {
                f.symbol = String(inner[..<plus.lowerBound])
                f.symbolOffset = hex(inner[plus.lowerBound...].dropFirst())
                if f.symbol!.isEmpty || f.symbolOffset == nil { f.symbol = nil; f.symbolOffset = nil }
            }
        }
        let m = module.trimmingBlanks()
        if !m.isEmpty { f.module = String(m) }
        return f
    }

    /// perf script's callchain lines: "HEXADDR SYMBOL+0xOFF (DSO)" or "HEXADDR [unknown] (DSO)".
    static func perf(_ s: Substring) -> PastedFrame? {
        let token = s.prefix { $0 != " " && $0 != "\t" }
        guard !token.isEmpty, token.count <= 16, token.allSatisfy(\.isHexDigit), s.hasSuffix(")"),
              let open = s.lastIndex(of: "("), let a = hex(token) else { return nil }
        var f = PastedFrame(format: .perf, address: a)
        let dso = s[s.index(after: open)..<s.index(before: s.endIndex)]
        if !dso.isEmpty && dso != "[unknown]" { f.module = String(dso) }
        let sym = s[token.endIndex..<open].trimmingBlanks()
        if sym.isEmpty { return nil }
        if sym != "[unknown]" {
            if let plus = sym.lastRange(of: "+0x"), let off = hex(sym[plus.lowerBound...].dropFirst()) {
                f.symbol = String(sym[..<plus.lowerBound]); f.symbolOffset = off
            } else {
                f.symbol = String(sym); f.symbolOffset = nil
            }
        }
        return f
    }

    /// "MODULE+0xOFF".
    static func moduleOffset(_ s: Substring) -> (String, UInt64)? {
        guard let plus = s.lastRange(of: "+0x"), plus.lowerBound > s.startIndex,
              let off = hex(s[plus.lowerBound...].dropFirst()) else { return nil }
        let m = s[..<plus.lowerBound]
        guard !m.contains(" "), !m.contains("(") else { return nil }
        return (String(m), off)
    }

    /// Hex digits with or without 0x, at most 64 bits.
    static func hex(_ s: Substring) -> UInt64? {
        guard !s.isEmpty, case .success(let v) = parseHexAddress(String(s)) else { return nil }
        return v
    }
}

extension Substring {
    /// The last occurrence of `needle` (bytes compared; no Foundation).
    func lastRange(of needle: String) -> Range<Substring.Index>? {
        let n = needle.utf8.count
        guard n > 0, utf8.count >= n else { return nil }
        var i = utf8.index(utf8.endIndex, offsetBy: -n)
        while true {
            if utf8[i..<utf8.index(i, offsetBy: n)].elementsEqual(needle.utf8) {
                return i..<utf8.index(i, offsetBy: n)
            }
            if i == utf8.startIndex { return nil }
            i = utf8.index(before: i)
        }
    }

    func trimmingBlanks() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return s
    }
}
