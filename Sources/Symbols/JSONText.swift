/// The one JSON string escaper: the output's writer and the string pool's ready-made JSON forms
/// both use it, so a string prints the same whichever way it reaches the output.
public enum JSONText {
    /// The most bytes `write` makes of `count` bytes: each escaped as `\u00XX`, and the quotes.
    @inline(__always) public static func maxLength(_ count: Int) -> Int { 6 * count + 2 }

    /// `u` as a JSON string, quotes included, written at `out`, which has room for
    /// `maxLength(u.count)` bytes (RFC 8259: `"`, `\` and control characters escaped; runs
    /// without them are copied whole). Returns the bytes written.
    public static func write(_ u: UnsafeBufferPointer<UInt8>, to out: UnsafeMutablePointer<UInt8>) -> Int {
        var n = 0
        @inline(__always) func put(_ b: UInt8) { out[n] = b; n += 1 }
        @inline(__always) func copy(_ from: Int, _ to: Int) {
            guard to > from, let base = u.baseAddress else { return }
            (out + n).update(from: base + from, count: to - from); n += to - from
        }
        put(0x22)
        var from = 0
        for i in 0..<u.count {
            let b = u[i]
            guard b < 0x20 || b == 0x22 || b == 0x5c else { continue }
            copy(from, i)
            put(0x5c)
            switch b {
            case 0x22, 0x5c: put(b)
            case 0x0a: put(0x6e)   // \n
            case 0x09: put(0x74)   // \t
            default: put(0x75); put(0x30); put(0x30); put(hexDigit(b >> 4)); put(hexDigit(b & 15))   // \u00XX
            }
            from = i + 1
        }
        copy(from, u.count)
        put(0x22)
        return n
    }

    /// `u` as a JSON string (as `write` makes it), appended to `out`.
    public static func append(_ u: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        out.append(contentsOf: [UInt8](unsafeUninitializedCapacity: maxLength(u.count)) { b, made in made = write(u, to: b.baseAddress!) })
    }

    @inline(__always) private static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x57 + v }
}
