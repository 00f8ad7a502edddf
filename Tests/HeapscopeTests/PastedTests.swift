import Foundation
import Glibc
import ProcessAccess
import Testing

/// `sym` on backtraces as other tools print them, each taken from TestTargets/frames.c (main ->
/// outer -> middle -> inner, every call on a line marked "CALL name"): glibc's
/// backtrace_symbols_fd, gdb's bt, AddressSanitizer, Valgrind and perf script. The oracles are the
/// marked lines and each tool's own symbolization of the same frames.
@Suite("sym: pasted backtraces", .serialized, .timeLimit(.minutes(3)))
struct PastedTests {
    /// frames.c's "CALL name" lines.
    static let calls: [String: Int] = {
        let text = (try? String(contentsOfFile: "\(Paths.root)/TestTargets/frames.c", encoding: .utf8)) ?? ""
        var out: [String: Int] = [:]
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if let r = line.range(of: "/* CALL ") { out[String(line[r.upperBound...].prefix { $0 != " " })] = n + 1 }
        }
        return out
    }()

    /// frames (or a launcher of it) running until its standard input closes.
    final class Running {
        let child: Spawned
        let dir: String
        init(_ path: String, _ args: [String]) throws {
            dir = try temporaryDirectory("frames")
            child = try Spawned.start(path, args, stdout: dir + "/out", stderr: dir + "/err")
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                if out.contains("ready ") { return }
                usleep(10000)
            }
            finish()
            throw HarnessError(description: "\(path) \(args) never said ready: \(out) \(err)")
        }
        var out: String { (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "" }
        var err: String { (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "" }
        /// The pid of frames itself (the launcher's, when it execs or hosts it).
        var pid: Int32 { Int32(out.components(separatedBy: "ready ").last?.prefix { $0.isNumber } ?? "") ?? child.pid }
        func finish() {
            close(child.stdinFD)
            _ = child.wait(timeoutSeconds: 30)
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// `sym ARGS --json` on `input`: one object per input line.
    func sym(_ args: [String], _ input: String) throws -> [[String: Any]] {
        let r = try run(Paths.heapscope, ["sym"] + args + ["--json"], input: input)
        #expect(r.status == 0, "\(r.err)")
        return try r.out.split(separator: "\n").map { try jsonObject(String($0)) }
    }

    func base(_ s: Any?) -> String { ((s as? String) ?? "").split(separator: "/").last.map(String.init) ?? "" }

    @Test("glibc backtrace_symbols_fd: module+offset and symbol+offset frames; callers at address - 1 (--no-adjust: one line late); --annotate keeps each line")
    func glibc() throws {
        let p = try Running(Paths.target("frames"), ["bt"])
        defer { p.finish() }
        let lines = p.out.split(separator: "\n").prefix { $0 != "end" }.map(String.init)
        try #require(lines.count >= 6, "\(p.out)")
        let input = lines.joined(separator: "\n") + "\n"
        let a = try sym(["--elf", Paths.target("frames")], input)
        try #require(a.count == lines.count)
        let expected: [(String, Int)] = [("inner", Self.calls["backtrace"]!), ("middle", Self.calls["inner"]!),
                                         ("outer", Self.calls["middle"]!), ("main", Self.calls["outer"]!)]
        for (k, (function, line)) in expected.enumerated() {
            #expect(a[k]["function"] as? String == function && a[k]["line"] as? Int == line && a[k]["frame"] as? Int == k
                    && a[k]["adjusted"] as? Bool == (k > 0), "\(lines[k]) -> \(a[k])")
        }
        // libc's frames (module+offset, and a versioned symbol+offset): the address in libc's file
        // is the run-time address less libc's load bias, read from the live process.
        let maps = try String(contentsOfFile: "/proc/\(p.pid)/maps", encoding: .utf8).split(separator: "\n")
        let libcBase = try #require(maps.first { $0.hasSuffix("/libc.so.6") && $0.split(separator: " ")[2] == "00000000" }
            .flatMap { UInt64($0.prefix { $0 != "-" }, radix: 16) })
        var libcFrames = 0
        for (k, line) in lines.enumerated() where line.contains("libc.so.6(") {
            let runtime = try #require(UInt64(line.components(separatedBy: "[0x").last!.dropLast(), radix: 16))
            #expect(a[k]["address"] as? String == "0x" + String(runtime - libcBase, radix: 16) && a[k]["function"] is String, "\(line) -> \(a[k])")
            libcFrames += 1
        }
        #expect(libcFrames >= 2)
        // As given: a caller's return address is on the statement after the call.
        let raw = try sym(["--elf", Paths.target("frames"), "--no-adjust"], input)
        for (k, (function, line)) in expected.enumerated() {
            #expect(raw[k]["function"] as? String == function && raw[k]["line"] as? Int == (k == 0 ? line : line + 1)
                    && raw[k]["adjusted"] as? Bool == false, "\(raw[k])")
        }
        // --annotate: every line as it was, its resolution after it.
        let annotated = try run(Paths.heapscope, ["sym", "--elf", Paths.target("frames"), "--annotate"], input: input)
        let out = annotated.out.split(separator: "\n").map(String.init)
        try #require(out.count == lines.count)
        for (k, (function, line)) in expected.enumerated() {
            #expect(out[k].hasPrefix(lines[k] + " [\(function)+0x") && out[k].hasSuffix(" frames.c:\(line)]"), "\(out[k])")
        }
    }

    @Test("gdb bt of the live process: every frame's function and line as gdb says")
    func gdb() throws {
        let p = try Running(Paths.target("frames"), ["bt"])
        defer { p.finish() }
        let bt = try run("/usr/bin/gdb", ["-q", "-batch", "-p", String(p.pid), "-ex", "bt"])
        let frames = bt.out.split(separator: "\n").filter { $0.hasPrefix("#") }.map(String.init)
        try #require(frames.count >= 5, "gdb: \(bt.out) \(bt.err)")
        let a = try sym(["--pid", String(p.pid)], frames.joined(separator: "\n") + "\n")
        try #require(a.count == frames.count)
        var checked = 0
        for (k, f) in frames.enumerated() {
            // "#2  0x... in middle (mode=...) at /path/frames.c:43"
            guard let inRange = f.range(of: " in "), let at = f.range(of: " at ", options: .backwards) else { continue }
            let function = String(f[inRange.upperBound...].prefix { $0 != " " })
            let place = f[at.upperBound...].split(separator: ":")
            #expect(a[k]["function"] as? String == function && a[k]["line"] as? Int == Int(place.last!)
                    && base(a[k]["file"]) == base(String(place.first!)), "\(f) -> \(a[k])")
            checked += 1
        }
        #expect(checked >= 5)
        #expect(a.first { $0["function"] as? String == "middle" }?["line"] as? Int == Self.calls["inner"])
    }

    @Test("AddressSanitizer, symbolize=0 (module+offset frames) resolved with --elf as ASan's own symbolizer says")
    func asan() throws {
        let raw = try run(Paths.target("frames_asan"), ["crash"], env: ["ASAN_OPTIONS": "symbolize=0"])
        let oracle = try run(Paths.target("frames_asan"), ["crash"], env: ["ASAN_OPTIONS": "symbolize=1"])
        func frames(_ s: String) -> [String] { s.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix("#") } }
        let lines = frames(raw.err), named = frames(oracle.err)
        try #require(lines.count >= 8 && lines.count == named.count, "\(raw.err)\n\(oracle.err)")
        let a = try sym(["--elf", Paths.target("frames_asan")], lines.joined(separator: "\n") + "\n")
        try #require(a.count == lines.count)
        var checked = 0
        for (k, n) in named.enumerated() {
            // "#1 0x... in middle /path/frames.c:43"
            let fields = n.split(separator: " ")
            guard fields.count >= 5, fields[2] == "in", !fields[4].hasPrefix("("), lines[k].contains("frames_asan+") || lines[k].contains("libc.so.6+") else { continue }
            let place = fields[4].split(separator: ":")
            #expect(a[k]["function"] as? String == String(fields[3]) && a[k]["line"] as? Int == Int(place[1])
                    && base(a[k]["file"]) == base(String(place[0])), "\(lines[k]) -> \(a[k]); ASan: \(n)")
            checked += 1
        }
        #expect(checked >= 8, "\(checked) frames compared")
        #expect(a.first?["function"] as? String == "inner" && a.first?["line"] as? Int == Self.calls["overflow"])
    }

    @Test("Valgrind's report of the live process (sym --pid while it runs under Valgrind): every frame as Valgrind names it")
    func valgrind() throws {
        let dir = try temporaryDirectory("vg")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try Running("/usr/bin/valgrind", ["-q", "--log-file=\(dir)/log", Paths.target("frames"), "crash"])
        defer { p.finish() }
        let log = try String(contentsOfFile: "\(dir)/log", encoding: .utf8)
        let lines = log.split(separator: "\n").map(String.init)
        let a = try sym(["--pid", String(p.pid)], lines.joined(separator: "\n") + "\n")
        try #require(a.count == lines.count)
        var checked = 0
        for (k, l) in lines.enumerated() {
            // "==N==    by 0x10938C: middle (frames.c:43)"
            guard let colon = l.range(of: ": "), l.hasSuffix(")"), let open = l.range(of: " (", options: .backwards),
                  !l.contains("(in "), l.contains(" at 0x") || l.contains(" by 0x") else { continue }
            let function = String(l[colon.upperBound..<open.lowerBound])
            let place = l[open.upperBound...].dropLast().split(separator: ":")
            #expect(a[k]["function"] as? String == function && a[k]["line"] as? Int == Int(place.last!)
                    && base(a[k]["file"]) == String(place.first!) && a[k]["adjusted"] as? Bool == false, "\(l) -> \(a[k])")
            checked += 1
        }
        #expect(checked >= 8, "\(log)")
    }

    @Test("perf script callchains: symbol+offset in each DSO; the sampled frame as is, callers at address - 1")
    func perf() throws {
        let dir = try temporaryDirectory("perf")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rec = try run("/usr/bin/perf", ["record", "-q", "-g", "-o", "\(dir)/perf.data", "--", Paths.target("frames"), "spin"], timeout: 60)
        #expect(rec.status == 0, "perf record: \(rec.err)")
        let script = try run("/usr/bin/perf", ["script", "-i", "\(dir)/perf.data"], timeout: 60)
        // The callchains that start in inner: five lines each (inner, middle, outer, main, libc).
        var input: [String] = []
        let all = script.out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (k, l) in all.enumerated() where l.contains(" inner+0x") && k > 0 && !all[k - 1].hasPrefix("\t") && input.count < 400 {
            input += [all[k - 1]] + all[k...].prefix { $0.hasPrefix("\t") }
        }
        try #require(input.count >= 40, "perf script: \(script.out.prefix(2000)) \(script.err)")
        let a = try sym(["--elf", Paths.target("frames")], input.joined(separator: "\n") + "\n")
        try #require(a.count == input.count)
        var checked = 0
        for (k, l) in input.enumerated() where l.hasPrefix("\t") && l.hasSuffix("/frames)") {
            let sym = l.split(separator: " ").dropFirst().first { !$0.isEmpty && !$0.allSatisfy(\.isHexDigit) }.map(String.init) ?? ""
            let perfName = String(sym.prefix { $0 != "+" })
            #expect(a[k]["symbol"] as? String == perfName, "\(l) -> \(a[k])")
            let want: Int? = ["middle": Self.calls["inner"], "outer": Self.calls["middle"], "main": Self.calls["outer"]][perfName] ?? nil
            if let want { #expect(a[k]["line"] as? Int == want && a[k]["adjusted"] as? Bool == true, "\(l) -> \(a[k])") }
            if perfName == "inner" { #expect(a[k]["frame"] as? Int == 0 && a[k]["adjusted"] as? Bool == false, "\(l) -> \(a[k])") }
            checked += 1
        }
        #expect(checked >= 40)
    }
}
