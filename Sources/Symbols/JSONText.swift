/// The one JSON string escaper: the output's writer and the string pool's ready-made JSON forms
/// both use it, so a string prints the same whichever way it reaches the output.
public enum JSONText {
    /// `u` as a JSON string, quotes included, appended to `out` (RFC 8259: `"`, `\` and control
    /// characters escaped; runs without them are copied whole).
    public static func append(_ u: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        out.append(0x22)
        var from = 0
        for i in 0..<u.count {
            let b = u[i]
            guard b < 0x20 || b == 0x22 || b == 0x5c else { continue }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: u[from..<i]))
            switch b {
            case 0x22: out.append(contentsOf: "\\\"".utf8)
            case 0x5c: out.append(contentsOf: "\\\\".utf8)
            case 0x0a: out.append(contentsOf: "\\n".utf8)
            case 0x09: out.append(contentsOf: "\\t".utf8)
            default:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: "\\u00".utf8); out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 15)])
            }
            from = i + 1
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: u[from...]))
        out.append(0x22)
    }
}
