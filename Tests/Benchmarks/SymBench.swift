// `heapscope sym` against llvm-symbolizer, eu-addr2line and GNU addr2line: the same addresses
// (random bytes of function symbols, weighted by size, fixed seed) over libc with its debug file
// and over heapscope's own debug build (Swift, full DWARF, no .debug_aranges). Every tool prints
// its inline chain with demangled names; answers are compared frame by frame with heapscope's.
import Glibc
import ProcessAccess

/// A tool run: wall seconds, CPU seconds (user + sys), peak RSS (MiB), its output.
struct ToolRun { var wall: Double; var cpu: Double; var rssMiB: Double; var output: String }

func runTool(_ path: String, _ args: [String], input: String) throws -> ToolRun? {
    let out = "/tmp/heapscope-symbench-\(getpid()).out"
    defer { unlink(out) }
    let rssFile = out + ".rss"
    defer { unlink(rssFile) }
    let s = now()
    // Through GNU time: a posix_spawn'ed child's ru_maxrss counts this process's memory, which
    // it shares until exec.
    let child = try Spawned.start("/usr/bin/time", ["-f", "%M", "-o", rssFile, path] + args, stdinPipe: false, stdin: input, stdout: out)
    // (eu-addr2line exits with 1 when some address has no line: its answers still count)
    guard let (st, ru) = child.wait(timeoutSeconds: 1800), st & 0x7f == 0 else { return nil }
    let wall = now() - s
    let cpu = Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6 + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6
    let kb = readFile(rssFile).split(separator: "\n").last.flatMap { Double($0) } ?? 0
    return ToolRun(wall: wall, cpu: cpu, rssMiB: kb / 1024, output: readFile(out))
}

/// Frames of one address: (function, file, line), innermost first; columns are left out
/// (GNU addr2line prints none).
typealias Chain = [(function: Substring, file: Substring, line: Substring)]

/// llvm-symbolizer's default output (and heapscope's --format llvm): per address, lines
/// "function" / "file:line:column" per frame, then an empty line.
func parseLLVM(_ s: String) -> [Chain] {
    var out: [Chain] = [], cur: Chain = []
    var lines = s.split(separator: "\n", omittingEmptySubsequences: false)[...]
    if lines.last == "" { lines.removeLast() }
    while let f = lines.popFirst() {
        if f.isEmpty { out.append(cur); cur = []; continue }
        guard let loc = lines.popFirst() else { break }
        let p = loc.split(separator: ":", omittingEmptySubsequences: false)
        cur.append((f, p.first ?? "", p.count > 1 ? p[1] : "0"))
    }
    return out
}

/// addr2line -a -f -i (GNU and elfutils): "0xADDR", then "function" / "file:line[:column]" pairs.
func parseAddr2line(_ s: String) -> [Chain] {
    var out: [Chain] = []
    var cur: Chain? = nil
    var lines = s.split(separator: "\n")[...]
    while let l = lines.popFirst() {
        if l.hasPrefix("0x") { if let c = cur { out.append(c) }; cur = []; continue }
        guard let loc = lines.popFirst() else { break }
        let fn = l.firstRange(of: " inlined at ").map { l[..<$0.lowerBound] } ?? l
        var p = loc.split(separator: ":", omittingEmptySubsequences: false)
        if let d = p.last?.firstIndex(of: " ") { p[p.count - 1] = p[p.count - 1][..<d] }   // "12 (discriminator 3)"
        cur?.append((fn, p.first ?? "", p.count > 1 ? p[1] : "0"))
    }
    if let c = cur { out.append(c) }
    return out
}

/// How many answers agree with heapscope's: same file:line for every frame; and same function
/// names too (a compiler clone's suffix, spelled `[clone .x]` by GNU and `(.x)` by LLVM, and
/// "??" for unknown are normalised).
func agreement(_ a: [Chain], _ b: [Chain]) -> (locations: Int, names: Int) {
    func unknown(_ s: Substring) -> Bool { s.isEmpty || s == "??" }
    func name(_ s: Substring) -> Substring {
        var n = s
        if let r = n.firstRange(of: " [clone ") { n = n[..<r.lowerBound] }
        if let r = n.firstRange(of: " (.") { n = n[..<r.lowerBound] }
        strip: while true {
            if n.hasSuffix(".cold") { n = n.dropLast(5); continue }
            if let dot = n.lastIndex(of: "."), n.index(after: dot) < n.endIndex, n[n.index(after: dot)...].allSatisfy(\.isNumber) {
                let head = n[..<dot]
                for kw in [".part", ".isra", ".constprop"] where head.hasSuffix(kw) { n = head.dropLast(kw.count); continue strip }
            }
            return n
        }
    }
    var loc = 0, names = 0
    for (x, y) in zip(a, b) where x.count == y.count {
        guard zip(x, y).allSatisfy({ ($0.file == $1.file || (unknown($0.file) && unknown($1.file))) && $0.line == $1.line }) else { continue }
        loc += 1
        if zip(x, y).allSatisfy({ name($0.function) == name($1.function) || (unknown($0.function) && unknown($1.function)) }) { names += 1 }
    }
    return (loc, names)
}

/// SplitMix64: the same addresses on every run.
struct SplitMix { var s: UInt64; mutating func next() -> UInt64 { s &+= 0x9e3779b97f4a7c15; var z = s; z = (z ^ (z >> 30)) &* 0xbf58476d1ce4e5b9; z = (z ^ (z >> 27)) &* 0x94d049bb133111eb; return z ^ (z >> 31) } }

/// `count` random bytes of the function symbols of `nmFile`, weighted by size.
func randomFunctionAddresses(_ nmFile: String, count: Int) throws -> [UInt64] {
    let r = try runTool("/usr/bin/nm", ["-S", "--defined-only", nmFile], input: "/dev/null")
    var ranges: [(UInt64, UInt64)] = [], total: UInt64 = 0
    for l in (r?.output ?? "").split(separator: "\n") {
        let f = l.split(separator: " ")
        guard f.count == 4, "tTWi".contains(f[2]), let a = UInt64(f[0], radix: 16), let n = UInt64(f[1], radix: 16), n > 0 else { continue }
        ranges.append((a, total)); total += n
    }
    guard total > 0 else { return [] }
    var rng = SplitMix(s: 1)
    return (0..<count).map { _ in
        let x = rng.next() % total
        var lo = 0, hi = ranges.count
        while lo < hi { let m = (lo + hi) / 2; if ranges[m].1 <= x { lo = m + 1 } else { hi = m } }
        return ranges[lo - 1].0 + (x - ranges[lo - 1].1)
    }
}

func symBenchmark(quick: Bool) throws {
    let heapscope = root + "/.build/release/heapscope"
    let count = quick ? 100_000 : 1_000_000
    print("heapscope sym benchmark: \(count) addresses (random bytes of functions, fixed seed), release build")
    print("every tool prints inline chains with demangled names; 'agree' = same frames as heapscope")
    print("")
    let libc = "/lib/x86_64-linux-gnu/libc.so.6"
    let probe = try runTool(heapscope, ["sym", "--json", "--elf", libc, "0"], input: "/dev/null")
    guard let idStart = probe?.output.firstRange(of: "\"build_id\":\"") else { print("cannot read libc's build-id"); return }
    let id = probe!.output[idStart.upperBound...].prefix(40)
    let libcDebug = "/usr/lib/debug/.build-id/\(id.prefix(2))/\(id.dropFirst(2)).debug"
    let cases: [(String, String, String)] = [
        ("libc.so.6 with its debug file (libc6-dbg)", libc, libcDebug),
        ("heapscope debug build (Swift, no .debug_aranges)", root + "/.build/debug/heapscope", root + "/.build/debug/heapscope"),
    ]
    for (label, file, nmFile) in cases {
        guard access(file, R_OK) == 0, access(nmFile, R_OK) == 0 else { print("== \(label): \(file) or \(nmFile) missing, skipped\n"); continue }
        let addrs = try randomFunctionAddresses(nmFile, count: count)
        let input = "/tmp/heapscope-symbench-\(getpid()).in"
        defer { unlink(input) }
        let text = addrs.map { "0x" + String($0, radix: 16) }.joined(separator: "\n") + "\n"
        let fd = open(input, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        print("== \(label): \(Set(addrs).count) distinct of \(addrs.count)")
        // eu-addr2line -i runs at a few thousand addresses a second: it gets the first 100k.
        let euCount = min(addrs.count, 100_000)
        let euInput = input + ".eu"
        defer { unlink(euInput) }
        let euText = addrs.prefix(euCount).map { "0x" + String($0, radix: 16) }.joined(separator: "\n") + "\n"
        let fd2 = open(euInput, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = euText.withCString { write(fd2, $0, strlen($0)) }
        close(fd2)
        let tools: [(String, String, [String], String, (String) -> [Chain])] = [
            ("heapscope sym", heapscope, ["sym", "--elf", file, "--format", "llvm"], input, parseLLVM),
            ("llvm-symbolizer", "/usr/bin/llvm-symbolizer", ["--obj=" + file], input, parseLLVM),
            ("eu-addr2line -i", "/usr/bin/eu-addr2line", ["-a", "-f", "-i", "-C", "-e", file], euInput, parseAddr2line),
            ("addr2line -i", "/usr/bin/addr2line", ["-a", "-f", "-i", "-C", "-e", file], input, parseAddr2line),
        ]
        var base: [Chain] = [], heapscopeWall = 0.0, heapscopeCPU = 0.0
        print("  tool               wall s   cpu s   addr/s (wall)   peak RSS   heapscope faster (wall, cpu)   agree: file:line, +names")
        for (name, path, args, toolInput, parse) in tools {
            let n = toolInput == input ? addrs.count : euCount
            guard access(path, X_OK) == 0, let r = try runTool(path, args, input: toolInput) else {
                print("  \(name.padding(18)) not available or failed"); continue
            }
            let chains = parse(r.output)
            if name == "heapscope sym" { base = chains; heapscopeWall = r.wall; heapscopeCPU = r.cpu }
            let agree = agreement(Array(base.prefix(n)), chains)
            // Ratios per address (eu-addr2line answered fewer).
            let f = Double(addrs.count) / Double(n)
            let speed = name == "heapscope sym" ? "-" : "\(fmt(r.wall * f / heapscopeWall, 1))x, \(fmt(r.cpu * f / heapscopeCPU, 1))x"
            print("  \(name.padding(18)) \(fmt(r.wall, 2).padding(8, left: true)) \(fmt(r.cpu, 2).padding(7, left: true))"
                  + " \(String(Int(Double(n) / r.wall)).padding(15, left: true)) \((fmt(r.rssMiB, 0) + " MiB").padding(10, left: true))"
                  + "   \(speed.padding(28))   \(agree.locations), \(agree.names) of \(n)" + (chains.count == n ? "" : " (\(chains.count) answers parsed)"))
        }
        // JSON: heapscope sym --json against llvm-symbolizer --output-style=JSON (same addresses).
        if access("/usr/bin/llvm-symbolizer", X_OK) == 0,
           let hj = try runTool(heapscope, ["sym", "--json", "--elf", file], input: input),
           let lj = try runTool("/usr/bin/llvm-symbolizer", ["--output-style=JSON", "--obj=" + file], input: input) {
            print("  JSON: heapscope sym --json \(fmt(hj.wall, 2)) s (\(fmt(hj.cpu, 2)) s CPU), llvm-symbolizer --output-style=JSON \(fmt(lj.wall, 2)) s"
                  + " (\(fmt(lj.cpu, 2)) s CPU): heapscope \(fmt(lj.wall / hj.wall, 1))x faster (aim >= 5x); text was \(fmt(heapscopeWall, 2)) s")
        }
        print("")
    }
    print("eu-addr2line gets the first 100k addresses (its ratios are per address).")
    print("heapscope resolves on one thread and prints on another (wall); 'cpu' is both together.")
    print("Names differ by design where llvm-symbolizer names the outermost frame from .dynsym (libc's")
    print("symbols are in its debug file) and where addr2line/eu-addr2line name it from DWARF.")
    print("llvm-symbolizer 14 and binutils do not demangle Swift, so names differ on the Swift binary;")
    print("eu-addr2line 0.188 finds no lines in CUs without .debug_aranges (issue 3).")
}

extension String {
    func padding(_ n: Int, left: Bool = false) -> String {
        count >= n ? self : (left ? String(repeating: " ", count: n - count) + self : self + String(repeating: " ", count: n - count))
    }
}
