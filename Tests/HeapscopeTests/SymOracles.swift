import Foundation
import Glibc
import Testing

/// One source frame as every resolver reports it: function, file, line, column (0 = unknown).
struct Frame: Equatable, CustomStringConvertible {
    var function: String
    var file: String
    var line: Int
    var column: Int
    /// heapscope only, on its outermost frame: the ELF symbol holding the address (its `symbol`).
    var symbol = ""
    var description: String { "\(function) \(file):\(line):\(column)" }
}

/// A symbol from `nm -S --defined-only`.
struct NMSymbol {
    var address: UInt64
    var size: UInt64
    var type: Character
    var name: String
}

enum Oracles {
    static let llvmSymbolizer = "/usr/bin/llvm-symbolizer"
    static let euAddr2line = "/usr/bin/eu-addr2line"

    /// swift-demangle from the toolchain that runs these tests (next to `swift` on PATH).
    static var swiftDemangle: String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let swift = "\(dir)/swift"
            guard access(swift, X_OK) == 0 else { continue }
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX))
            guard realpath(swift, &buf) != nil else { continue }
            let real = String(cString: buf)
            let p = String(real[..<real.lastIndex(of: "/")!]) + "/swift-demangle"
            if access(p, X_OK) == 0 { return p }
        }
        return nil
    }

    static func nm(_ file: String) throws -> [NMSymbol] {
        let r = try run("/usr/bin/nm", ["-S", "--defined-only", file])
        guard r.status == 0 else { throw HarnessError(description: "nm \(file): \(r.err)") }
        return r.out.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count == 4, let a = UInt64(f[0], radix: 16), let n = UInt64(f[1], radix: 16) else { return nil }
            return NMSymbol(address: a, size: n, type: f[2].first!, name: String(f[3]))
        }
    }

    /// Every `step`-th byte of every function symbol (nm types t T W i), sorted, unique.
    static func functionAddresses(_ syms: [NMSymbol], step: UInt64) -> [UInt64] {
        var set = Set<UInt64>()
        for s in syms where "tTWi".contains(s.type) {
            var a = s.address
            while a < s.address + s.size { set.insert(a); a += step }
        }
        return set.sorted()
    }

    static func input(_ addrs: [UInt64]) -> String { addrs.map { "0x" + String($0, radix: 16) + "\n" }.joined() }

    static func lines(_ s: String) -> [Substring] { s.split(separator: "\n", omittingEmptySubsequences: false).dropLast(s.hasSuffix("\n") ? 1 : 0).map { $0 } }

    /// heapscope sym --json: per address, its frames (innermost first); with no line information
    /// the symbol alone, as llvm-symbolizer reports it.
    static func heapscope(_ args: [String], _ addrs: [UInt64]) throws -> [[Frame]] {
        let r = try run(Paths.heapscope, ["sym", "--json"] + args, input: input(addrs), timeout: 300)
        guard r.status == 0 else { throw HarnessError(description: "heapscope sym \(args): \(r.err)") }
        return try lines(r.out).map { line in
            let j = try jsonObject(String(line))
            let frames = (j["inlined"] as? [[String: Any]] ?? []).map {
                Frame(function: $0["function"] as? String ?? "", file: $0["file"] as? String ?? "",
                      line: $0["line"] as? Int ?? 0, column: $0["column"] as? Int ?? 0)
            }
            // No line information: the symbol, and the file of its STT_FILE entry if local.
            var out = frames.isEmpty ? [Frame(function: j["symbol"] as? String ?? "", file: j["file"] as? String ?? "", line: 0, column: 0)] : frames
            out[out.count - 1].symbol = j["symbol"] as? String ?? ""
            return out
        }
    }

    /// llvm-symbolizer --output-style=JSON (demangled by llvm; Swift names left mangled by llvm 14).
    static func llvm(_ file: String, _ addrs: [UInt64]) throws -> [[Frame]] {
        let r = try run(llvmSymbolizer, ["--output-style=JSON", "--obj=" + file], input: input(addrs), timeout: 300)
        guard r.status == 0 else { throw HarnessError(description: "llvm-symbolizer \(file): \(r.err)") }
        return try lines(r.out).map { line in
            let j = try jsonObject(String(line))
            return (j["Symbol"] as? [[String: Any]] ?? []).map {
                var f = $0["FunctionName"] as? String ?? ""
                if f == "??" { f = "" }
                return Frame(function: f, file: $0["FileName"] as? String ?? "",
                             line: $0["Line"] as? Int ?? 0, column: $0["Column"] as? Int ?? 0)
            }
        }
    }

    /// eu-addr2line -a -f -i -C: "0xADDR", then per frame a function line ("f inlined at L in g"
    /// for inlined calls) and a "file:line[:column]" line.
    static func eu(_ file: String, _ addrs: [UInt64]) throws -> [[Frame]] {
        let r = try run(euAddr2line, ["-a", "-f", "-i", "-C", "-e", file], input: input(addrs), timeout: 300)
        // (exit status 1: some address had no line information; its answer is still printed)
        guard r.status == 0 || (r.status == 1 && !r.out.isEmpty) else { throw HarnessError(description: "eu-addr2line \(file): \(r.err)") }
        var out: [[Frame]] = []
        let ls = lines(r.out)
        var i = 0
        while i < ls.count {
            guard ls[i].hasPrefix("0x") else { throw HarnessError(description: "eu-addr2line: unexpected line \(ls[i])") }
            i += 1
            var frames: [Frame] = []
            while i + 1 < ls.count, !ls[i].hasPrefix("0x") {
                let fn = ls[i].components(separatedBy: " inlined at ")[0]
                let loc = ls[i + 1].split(separator: ":", omittingEmptySubsequences: false)
                // file[:line[:column]]; "??:0" when unknown
                var file = String(loc[0]), line = 0, column = 0
                if loc.count >= 2 { line = Int(loc[1]) ?? 0 }
                if loc.count >= 3 { column = Int(loc[2]) ?? 0 }
                if file == "??" { file = "" }
                frames.append(Frame(function: fn == "??" ? "" : fn, file: file, line: line, column: column))
                i += 2
            }
            out.append(frames)
        }
        return out
    }

    /// Demangle Swift names ($s...) with the toolchain's swift-demangle, as heapscope prints them.
    static func demangleSwift(_ frames: inout [[Frame]]) throws {
        let names = Set(frames.flatMap { $0.map(\.function) }.filter { $0.hasPrefix("$s") }).sorted()
        guard !names.isEmpty else { return }
        let tool = try #require(swiftDemangle, "swift-demangle not found next to swift")
        let r = try run(tool, ["--no-sugar", "--compact"], input: names.joined(separator: "\n") + "\n")
        let demangled = lines(r.out).map(String.init)
        try #require(demangled.count == names.count)
        let map = Dictionary(uniqueKeysWithValues: zip(names, demangled))
        for i in frames.indices { for k in frames[i].indices { frames[i][k].function = map[frames[i][k].function] ?? frames[i][k].function } }
    }
}

/// Known, documented differences between heapscope and the oracles. Each rule is applied to one
/// pair of chains for one address and says whether they then agree.
enum KnownDifferences {
    /// GNU spells a compiler clone `f(int) [clone .isra.0]`, LLVM `f(int) (.isra.0)`.
    static func llvmCloneSpelling(_ n: String) -> String {
        n.replacingOccurrences(of: #" \[clone ([^\]]+)\]"#, with: " ($1)", options: .regularExpression)
    }
    /// Clone suffixes of a symbol name (foo.cold, foo.part.0, foo.isra.0, foo.constprop.0).
    static func withoutCloneSuffix(_ n: String) -> String {
        n.replacingOccurrences(of: #"(\.(cold|part\.\d+|isra\.\d+|constprop\.\d+))+$"#, with: "", options: .regularExpression)
    }
    /// Inherited C++ constructors: llvm-symbolizer names them by the derived class, heapscope (and
    /// GNU addr2line) by the DWARF linkage name of the base constructor. Equal once every
    /// `::NAME(` is reduced to `::(`.
    static func withoutLastQualifier(_ n: String) -> String {
        n.replacingOccurrences(of: #"::[^:(]+\("#, with: "::(", options: .regularExpression)
    }

    /// heapscope vs llvm-symbolizer. heapscope names every frame by its DWARF subprogram, as gdb
    /// does; llvm-symbolizer 14 names the outermost frame by the ELF symbol holding the address
    /// when the file it reads has one (compiler clones `foo.cold`, `foo(int) (.isra.0)`; aliases
    /// such as `realpath` for `__GI___realpath`), so there it is compared with heapscope's
    /// `symbol`. `aliases`: names at the same address (from nm of the file that holds .symtab) and
    /// `separateDebug`: llvm 14 names the outermost frame of a binary whose symbols are in a
    /// separate debug file from the main file's .dynsym only, so for those its name may be empty,
    /// an alias, or lack the clone suffix.
    static func agreeWithLLVM(_ h: [Frame], _ l: [Frame], aliases: [String: Set<UInt64>], separateDebug: Bool) -> Bool {
        guard h.count == l.count else { return false }
        for (k, (a, b)) in zip(h, l).enumerated() {
            guard a.file == b.file, a.line == b.line, a.column == b.column else { return false }
            let x = llvmCloneSpelling(a.function), y = b.function
            if x == y || withoutLastQualifier(x) == withoutLastQualifier(y) { continue }
            guard k == h.count - 1 else { return false }
            if !a.symbol.isEmpty && llvmCloneSpelling(a.symbol) == y { continue }
            guard separateDebug else { return false }
            if y.isEmpty { continue }
            let xs = withoutCloneSuffix(a.function), ys = withoutCloneSuffix(y)
            if xs == ys { continue }
            // (a name may be at several addresses: glob@@GLIBC_2.27 and glob@GLIBC_2.2.5)
            if let p = aliases[xs] ?? aliases[a.function], let q = aliases[ys] ?? aliases[y], !p.isDisjoint(with: q) { continue }
            return false
        }
        return true
    }

    /// heapscope vs eu-addr2line: eu-addr2line names the outermost frame from DWARF (the
    /// subprogram's DW_AT_name, without clone suffix or, for some, parameters), not from the
    /// symbol table, so the outermost name is not compared; every location and every inlined
    /// function name is.
    static func agreeWithEU(_ h: [Frame], _ e: [Frame]) -> Bool {
        guard h.count == e.count else { return false }
        for (k, (a, b)) in zip(h, e).enumerated() {
            guard a.file == b.file, a.line == b.line, a.column == b.column else { return false }
            if k < h.count - 1 && a.function != b.function { return false }
        }
        return true
    }
}
