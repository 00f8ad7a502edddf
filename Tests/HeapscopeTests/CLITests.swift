import Foundation
import Inspect
import ProcessAccess
import Glibc
import Testing

func jsonObject(_ s: String) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any])
}

@Suite("The heapscope command", .serialized, .timeLimit(.minutes(5)))
struct CLITests {
    @Test("stat --json: documented keys, mallinfo2 equal to the target's own")
    func statJSON() throws {
        let p = try TargetProcess("heap_kinds")
        let r = try run(Paths.heapscope, ["stat", String(p.pid), "--json"])
        #expect(r.status == 0, "\(r.err)")
        let j = try jsonObject(r.out)
        for key in ["pid", "pause_us", "glibc_version", "arenas", "totals", "mallinfo2", "warnings"] {
            #expect(j[key] != nil, "missing key \(key)")
        }
        #expect(j["pid"] as? Int == Int(p.pid))
        let mi = try #require(j["mallinfo2"] as? [String: Any])
        #expect(Set(mi.keys) == Set(p.manifest.mallinfo2.keys))
        for (k, v) in p.manifest.mallinfo2 { #expect((mi[k] as? NSNumber)?.uint64Value == v, "mallinfo2.\(k)") }
        let arenas = try #require(j["arenas"] as? [[String: Any]])
        #expect(arenas.count == 1)
        #expect(p.release().ok)
    }

    @Test("every JSON document begins with heapscope_version and schema: each command's, watch's lines, errors; chunks --limit 0 lists no chunk")
    func versionInJSON() throws {
        let p = try TargetProcess("heap_kinds")
        defer { p.release() }
        let dir = try temporaryDirectory("json")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pid = String(p.pid), addr = "0x" + String(try #require(p.manifest.live.keys.min()), radix: 16), snap = dir + "/s.snap"
        let runs: [[String]] = [
            ["stat", pid, "--json"], ["chunks", pid, "--json", "--limit", "0"], ["leaks", pid, "--json"], ["types", pid, "--json"],
            ["why", pid, addr, "--json"], ["show", pid, addr, "--json"], ["snapshot", pid, "-o", snap, "--json"],
            ["diff", snap, snap, "--json"], ["watch", pid, "--count", "2", "--interval", "100ms", "--json"], ["stat", "99999999", "--json"],
        ]
        for args in runs {
            let r = try run(Paths.heapscope, args)
            let lines = r.out.split(separator: "\n")
            #expect(!lines.isEmpty, "\(args.joined(separator: " ")) printed nothing: \(r.err)")
            for line in lines {
                #expect(line.hasPrefix("{\"heapscope_version\":\"\(HeapscopeVersion.number)\",\"schema\":2,"), "\(args.joined(separator: " ")): \(line.prefix(120))")
            }
            if args[0] == "chunks" { #expect((try jsonObject(r.out)["chunks"] as? [Any])?.isEmpty == true, "--limit 0 listed chunks") }
        }
    }

    @Test("progress on a terminal: each phase of a snapshot on standard error, in order; none with --json")
    func progress() throws {
        let p = try TargetProcess("heap_kinds")
        defer { p.release() }
        let dir = try temporaryDirectory("progress")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // script(1) gives heapscope a terminal for standard error.
        let tty = try run("/usr/bin/script", ["-qec", "\(Paths.heapscope) snapshot \(p.pid) -o \(dir)/s.snap", "/dev/null"])
        let phases = ["reading mappings and symbols", "stopping the target to copy", "detached after", "scanning", "labelling types", "recording", "writing \(dir)/s.snap"]
        var at = tty.out.startIndex
        for ph in phases {
            let r = tty.out.range(of: "heapscope: " + ph, range: at..<tty.out.endIndex)
            #expect(r != nil, "no '\(ph)' after the previous phase in: \(tty.out.replacingOccurrences(of: "\r", with: "\n").suffix(800))")
            if let r { at = r.upperBound }
        }
        let json = try run("/usr/bin/script", ["-qec", "\(Paths.heapscope) snapshot \(p.pid) -o \(dir)/t.snap --json", "/dev/null"])
        #expect(!json.out.contains("heapscope: "), "\(json.out.prefix(300))")
        // A scan of more than 64 MiB says how far it is, in percent, rising.
        let big = try TargetProcess("bigheap", args: ["0", "2000000"])
        defer { big.release() }
        let leaks = try run("/usr/bin/script", ["-qec", "\(Paths.heapscope) leaks \(big.pid) --no-types", "/dev/null"])
        let percents = leaks.out.components(separatedBy: "chunks, ").dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }
        #expect(!percents.isEmpty && percents == percents.sorted() && percents.allSatisfy { $0 <= 100 }, "\(leaks.out.replacingOccurrences(of: "\r", with: "\n").suffix(600))")
    }

    @Test("every command's --help ends its description with examples of that command")
    func helpExamples() throws {
        for c in ["stat", "chunks", "leaks", "why", "types", "show", "snapshot", "diff", "watch", "sym", "gensyms"] {
            let h = try run(Paths.heapscope, [c, "--help"])
            let examples = h.out.components(separatedBy: "Examples:\n").dropFirst().first?.components(separatedBy: "\n\n").first ?? ""
            let lines = examples.split(separator: "\n").filter { $0.hasPrefix("  heapscope ") }
            #expect(h.status == 0 && !lines.isEmpty && lines.allSatisfy { $0.hasPrefix("  heapscope \(c) ") }, "\(c) --help: \(examples)")
        }
    }

    @Test("stat text output names the version, the pause and mallinfo2")
    func statText() throws {
        let p = try TargetProcess("heap_kinds")
        let r = try run(Paths.heapscope, ["stat", String(p.pid)])
        #expect(r.status == 0)
        #expect(r.out.contains("glibc \(p.manifest.glibc) malloc"))
        #expect(r.out.contains("paused "))
        #expect(r.out.contains("uordblks=\(p.manifest.mallinfo2["uordblks"]!)"))
        #expect(p.release().ok)
    }

    @Test("chunks filters: --state, --min-size, --limit, --arena")
    func chunksFilters() throws {
        let p = try TargetProcess("heap_kinds")
        let pid = String(p.pid)
        let tc = try jsonObject(run(Paths.heapscope, ["chunks", pid, "--state", "tcache", "--json"]).out)
        let rows = try #require(tc["chunks"] as? [[String: Any]])
        #expect(rows.count == p.manifest.freed.filter { $0.1 == "tcache" }.count)
        #expect(Set(rows.compactMap { $0["chunk"] as? String }) ==
                Set(p.manifest.freed.filter { $0.1 == "tcache" }.map { "0x" + String($0.0, radix: 16) }))
        let big = try jsonObject(run(Paths.heapscope, ["chunks", pid, "--min-size", "1000000", "--json"]).out)
        #expect((big["chunks"] as? [[String: Any]])?.count == p.manifest.mmapped.count)
        let lim = try run(Paths.heapscope, ["chunks", pid, "--limit", "3"])
        #expect(lim.out.split(separator: "\n").filter { $0.hasPrefix("  0x") || $0.hasPrefix(" 0x") || $0.hasPrefix("0x") }.count == 3)
        let a0 = try jsonObject(run(Paths.heapscope, ["chunks", pid, "--arena", "0", "--state", "mmapped", "--json"]).out)
        #expect((a0["chunks"] as? [[String: Any]])?.isEmpty == true, "mmapped chunks belong to no arena")
        // Sizes with units: 1K is 1024 bytes.
        func sizes(_ min: String) throws -> [Int] {
            try (jsonObject(run(Paths.heapscope, ["chunks", pid, "--min-size", min, "--json", "--no-types"]).out)["chunks"] as? [[String: Any]] ?? []).compactMap { $0["size"] as? Int }
        }
        let k = try sizes("1K"), bytes = try sizes("1024"), m = try sizes("1M")
        #expect(k == bytes && !k.isEmpty && k.allSatisfy { $0 >= 1024 } && m.count == p.manifest.mmapped.count)
        #expect(try run(Paths.heapscope, ["chunks", pid, "--min-size", "1X"]).status == 64)
        #expect(p.release().ok)
    }

    @Test("chunks --type and --owner: exactly the outstanding chunks the types inspection gives that type or owner")
    func chunksByTypeAndOwner() throws {
        let p = try TargetProcess("typed")
        defer { p.release() }
        let ty = try Inspector.types(pid: p.pid)
        for (type, owner) in [("struct node", nil), (nil, "table (typed.c:24)"), ("char[]", "list_head (typed.c:20)")] as [(String?, String?)] {
            var args = ["chunks", String(p.pid), "--json"]
            if let type { args += ["--type", type] }
            if let owner { args += ["--owner", owner] }
            let rows = try #require(try jsonObject(run(Paths.heapscope, args).out)["chunks"] as? [[String: Any]])
            let want = Set((0..<ty.blocks.count).filter { k in (type == nil || ty.label(k) == type) && (owner == nil || ty.owner(k) == owner) }
                .map { "0x" + String(ty.blocks.start[$0], radix: 16) })
            #expect(!want.isEmpty && Set(rows.compactMap { $0["chunk"] as? String }) == want, "\(args): \(rows.count) rows, \(want.count) wanted")
        }
    }

    @Test("bad input: no such pid (3), bad state (64), not glibc malloc: own, jemalloc, musl (6), corrupted heap (2)")
    func errors() throws {
        var r = try run(Paths.heapscope, ["stat", "999999"])
        #expect(r.status == 3)
        #expect(r.err.contains("no such process: 999999"))
        r = try run(Paths.heapscope, ["chunks", "1", "--state", "bogus"])
        #expect(r.status == 64)
        #expect(r.err.contains("unknown state 'bogus'"))
        r = try run(Paths.heapscope, ["stat", "-5"])
        #expect(r.status == 64)

        let own = try TargetProcess("own_malloc")
        r = try run(Paths.heapscope, ["stat", String(own.pid)])
        #expect(r.status == 6)
        #expect(r.err.contains("does not use glibc malloc") && r.err.contains("own_malloc"), "\(r.err)")
        #expect(own.release().ok)

        let jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
        let je = try TargetProcess("plain_wait", env: ["LD_PRELOAD=\(jemalloc)"])
        r = try run(Paths.heapscope, ["stat", String(je.pid)])
        #expect(r.status == 6)
        #expect(r.err.contains("jemalloc is loaded (\(jemalloc))"), "\(r.err)")
        #expect(je.release().ok)

        let musl = try TargetProcess("plain_wait_musl")
        r = try run(Paths.heapscope, ["stat", String(musl.pid)])
        #expect(r.status == 6)
        #expect(r.err.contains("is not linked with glibc"), "\(r.err)")
        #expect(musl.release().ok)

        // malloc never called: not initialised (7), with --json as JSON too.
        let idle = try TargetProcess("no_malloc")
        r = try run(Paths.heapscope, ["stat", "--json", String(idle.pid)])
        #expect(r.status == 7 && r.err.contains("glibc malloc is not initialised in the target yet"), "\(r.status) \(r.err)")
        #expect((try jsonObject(r.out)["error"] as? [String: Any])?["code"] as? Int == 7)
        #expect(idle.release().ok)

        // Pids are parsed as pids: one too large for any process is no such process, not a file name.
        r = try run(Paths.heapscope, ["stat", "99999999999"])
        #expect(r.status == 3 && r.err == "heapscope: no such process: 99999999999\n", "\(r.err)")
        // --json: errors on stdout as JSON too.
        r = try run(Paths.heapscope, ["stat", "--json", "999999"])
        let errorJSON = try jsonObject(r.out)["error"] as? [String: Any]
        #expect(r.status == 3 && errorJSON?["code"] as? Int == 3 && errorJSON?["message"] as? String == "no such process: 999999", "\(r.out)")
        for args in [["sym", "--json", "--pid", "999999", "0x1"], ["watch", "--json", "999999"]] {
            r = try run(Paths.heapscope, args)
            let e = try jsonObject(r.out)["error"] as? [String: Any]
            #expect(r.status == 3 && e?["code"] as? Int == 3 && e?["message"] as? String == "no such process: 999999", "\(args): \(r.out)")
        }

        // Refused before they are stopped: a 32-bit process, one run by valgrind, one with glibc's
        // malloc debugging library.
        for (name, launcher, env, says) in [
            ("plain_wait_32", [String](), [String](), "it is a 32-bit process (ELFCLASS32)"),
            ("plain_wait", ["/usr/bin/valgrind", "-q", Paths.target("plain_wait")], [], "valgrind is loaded"),
            ("plain_wait", [], ["LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0", "MALLOC_CHECK_=3"], "glibc's malloc debugging library"),
        ] {
            let t = try TargetProcess(name, env: env, launcher: launcher)
            r = try run(Paths.heapscope, ["stat", String(t.pid)])
            #expect(r.status == 6 && r.err.contains(says), "\(name) \(launcher) \(env): \(r.status) \(r.err)")
            #expect(t.release().ok)
        }

        let bad = try TargetProcess("corrupt")
        r = try run(Paths.heapscope, ["stat", String(bad.pid)])
        #expect(r.status == 2)
        #expect(r.out.contains("[corrupt_chunk]") && r.out.contains("[list_cycle]"))
        #expect(bad.release().ok)
    }

    @Test("output that cannot be written (a full disk): exit 1 naming the error, never exit 0")
    func writeErrors() throws {
        let p = try TargetProcess("heap_kinds")
        defer { p.release() }
        let dir = try temporaryDirectory("full")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for args in [["stat", String(p.pid)], ["stat", "--json", String(p.pid)], ["chunks", String(p.pid)], ["--version"]] {
            let child = try Spawned.start(Paths.heapscope, args, environment: nil, stdinPipe: false, stdin: "/dev/null",
                                          stdout: "/dev/full", stderr: dir + "/err")
            let st = try #require(child.wait(timeoutSeconds: 60))
            let err = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
            #expect(exitCode(ofWaitStatus: st.0) == 1 && err.hasSuffix("heapscope: cannot write the output: No space left on device\n"), "\(args): \(err)")
        }
    }
}
