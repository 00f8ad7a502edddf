import Analysis
import Foundation
import Glibc
import HeapModel
import Inspect
@testable import Output
import Testing

/// `leaks` on TestTargets/leaks.c, which notes every chunk it made on purpose with the class
/// Valgrind memcheck gives it; every other live chunk is still reachable.
@Suite("Leaks by reachability", .serialized, .timeLimit(.minutes(5)))
struct LeakTests {
    struct Expected { var byAddress: [UInt64: String] = [:]; var root: [UInt64: String] = [:]; var cycle: [UInt64] = [] }

    func expected(_ p: TargetProcess) -> Expected {
        var e = Expected()
        for line in p.manifestText.split(separator: "\n") where line.hasPrefix("leak ") {
            let f = line.split(separator: " ")
            let a = UInt64(f[1], radix: 16)!
            let parts = f[2].split(separator: "/")
            if f[2] == "cycle" { e.cycle.append(a) } else { e.byAddress[a] = String(parts[0]) }
            if parts.count > 1 { e.root[a] = String(parts[1]) }
        }
        // A leaked cycle: the first of it in address order leads the clique (definitely lost).
        e.cycle.sort()
        if let first = e.cycle.first { e.byAddress[first] = "definitely_lost" }
        for a in e.cycle.dropFirst() { e.byAddress[a] = "indirectly_lost" }
        return e
    }

    func check(_ p: TargetProcess, anonymousRoots: Bool, override: [UInt64: String] = [:]) throws {
        let r = try Inspector.leaks(pid: p.pid, anonymousRoots: anonymousRoots)
        var want = expected(p).byAddress
        for (a, c) in override { want[a] = c }
        #expect(want.count == 19, "the target notes 19 chunks")
        let b = r.leaks.blocks
        // Exactly the live chunks of the target are the blocks.
        #expect(Set(b.start) == Set(p.manifest.live.keys))
        var tallies: [String: Tally] = [:]
        for k in 0..<b.count {
            let a = b.start[k]
            let c = want[a] ?? "still_reachable"
            #expect(r.leaks.leakClass[k].name == c, "0x\(String(a, radix: 16)): \(r.leaks.leakClass[k].name), expected \(c)")
            tallies[c, default: Tally()].add(p.manifest.live[a] ?? 0)
        }
        for c in LeakClass.allCases { #expect(r.leaks.tallies[c] == (tallies[c.name] ?? Tally()), "\(c.name)") }
    }

    @Test("every class exactly: single, list, cycle, xor'ed, interior, dtv; roots: .bss, stack, TLS, mmap pool, register, chain")
    func classes() throws {
        let p = try TargetProcess("leaks")
        try check(p, anonymousRoots: true)
        #expect(p.release().ok, "the target must run on unharmed")
    }

    @Test("--no-anonymous-roots: the chunk held only by an mmap'd pool is definitely lost")
    func withoutAnonymousRoots() throws {
        let p = try TargetProcess("leaks")
        let pooled = try #require(expected(p).root.first { $0.value == "anonymous" }?.key)
        try check(p, anonymousRoots: false, override: [pooled: "definitely_lost"])
        #expect(p.release().ok)
    }

    @Test("oracle: Valgrind's leak_check (heuristics off) at the same pause point counts the same chunks per class")
    func valgrindOracle() throws {
        // The same deterministic target, once under memcheck (asked through vgdb while it waits)
        // and once natively under heapscope. Bytes differ by design: Valgrind counts the sizes
        // requested, heapscope the usable sizes malloc gave (it cannot know the requests).
        let log = "/tmp/heapscope-valgrind-\(getpid()).log"
        defer { unlink(log) }
        let vg = try TargetProcess("leaks", launcher: ["/usr/bin/valgrind", "--vgdb=yes", "--leak-check=full",
                                                       "--leak-check-heuristics=none", "--log-file=" + log, Paths.target("leaks")])
        defer { vg.release() }
        let out = try run("/usr/bin/vgdb", ["--pid=\(vg.pid)", "leak_check", "summary"], timeout: 120)
        var valgrind: [String: Int] = [:]
        // vgdb relays the answer (valgrind also writes it to its log)
        let printed = out.out + out.err + ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
        for line in printed.split(separator: "\n") {
            for c in LeakClass.allCases where line.contains(c.name.replacingOccurrences(of: "_", with: " ") + ":") {
                // "   definitely lost: 192 (+192) bytes in 4 (+4) blocks"
                let words = line.split(separator: " ")
                if let i = words.firstIndex(of: "in"), i + 1 < words.count { valgrind[c.name] = Int(words[i + 1]) }
            }
        }
        try #require(valgrind.count == 4, "vgdb (status \(out.status)): \(out.out) \(out.err); valgrind: \(printed)")
        let p = try TargetProcess("leaks")
        defer { p.release() }
        let r = try Inspector.leaks(pid: p.pid)
        for c in LeakClass.allCases { #expect(r.leaks.tallies[c]?.count == valgrind[c.name], "\(c.name): heapscope \(r.leaks.tallies[c]?.count ?? -1), valgrind \(valgrind[c.name] ?? -1)") }
    }

    @Test("why: the chain names the root each chunk is held by; lost chunks say why")
    func why() throws {
        let p = try TargetProcess("leaks")
        defer { p.release() }
        let e = expected(p)
        for (a, cls) in e.byAddress {
            let r = try run(Paths.heapscope, ["why", String(p.pid), "0x" + String(a + 4, radix: 16), "--json"])
            #expect(r.status == 0, "\(r.err)")
            let j = try jsonObject(r.out)
            #expect(j["class"] as? String == cls, "0x\(String(a, radix: 16))")
            #expect(j["chunk"] as? String == "0x" + String(a, radix: 16))
            let chain = j["chain"] as? [[String: Any]]
            switch cls {
            case "definitely_lost":
                #expect(chain == nil && (j["reason"] as? String)?.contains("nothing points to it") == true, "\(j)")
            case "indirectly_lost":
                #expect(chain?.first?["kind"] as? String == "chunk", "from the definitely lost chunk it hangs off: \(j)")
                #expect((chain?.count ?? 0) >= 2)
            default:
                let want = try #require(e.root[a], "no root noted for 0x\(String(a, radix: 16))")
                let kind = String(want.split(separator: ":")[0])
                if kind == "chunk" {
                    #expect(chain?.count == 2 && chain?[1]["kind"] as? String == "chunk", "\(j)")
                } else {
                    #expect(chain?.count == 1 && chain?[0]["kind"] as? String == kind, "0x\(String(a, radix: 16)) \(want): \(j)")
                }
                if want == "stack" && cls == "still_reachable" {
                    // main's local, found by unwinding the copied stack with the modules' CFI
                    #expect((chain?[0]["frame"] as? String)?.hasPrefix("in main at leaks.c:") == true, "\(j)")
                }
                if want.contains(":") {
                    let symbol = String(want.split(separator: ":")[1])
                    #expect(chain?[0]["symbol"] as? String == symbol, "\(j)")
                    // its definition: the first top-level line of leaks.c that declares it
                    let source = try String(contentsOfFile: Paths.root + "/TestTargets/leaks.c", encoding: .utf8)
                    let line = source.split(separator: "\n", omittingEmptySubsequences: false)
                        .firstIndex { !$0.hasPrefix(" ") && ($0.contains("*\(symbol);") || $0.contains(" \(symbol) =") || $0.contains("*\(symbol) =")) }
                    #expect(chain?[0]["line"] as? Int == line.map { $0 + 1 }, "\(symbol): \(j)")
                    #expect((chain?[0]["file"] as? String)?.hasSuffix("/TestTargets/leaks.c") == true)
                }
            }
        }
        let bad = try run(Paths.heapscope, ["why", String(p.pid), "0x10"])
        #expect(bad.status == 1 && bad.err.contains("is not in the heap"), "\(bad.err)")
    }

    @Test("leaks --json: the documented keys, totals equal to the library's")
    func json() throws {
        let p = try TargetProcess("leaks")
        let r = try run(Paths.heapscope, ["leaks", String(p.pid), "--json", "--show", "reachable"])
        #expect(r.status == 0, "\(r.err)")
        let j = try jsonObject(r.out)
        let lib = try Inspector.leaks(pid: p.pid)
        for c in LeakClass.allCases {
            let t = try #require(j[c.name] as? [String: Any], "missing \(c.name)")
            #expect(t["chunks"] as? Int == lib.leaks.tallies[c]?.count)
            #expect((t["bytes"] as? NSNumber)?.uint64Value == lib.leaks.tallies[c]?.bytes)
        }
        #expect((j["pause_us"] as? Int ?? 0) > 0)
        let groups = try #require(j["groups"] as? [[String: Any]])
        #expect(groups.reduce(0) { $0 + ($1["chunks"] as? Int ?? 0) } == lib.leaks.blocks.count, "with --show reachable every chunk is in a group")
        // Groups say what their chunks point to: symbols of code and globals, or text.
        let described = try #require(expected(p).root.first { $0.value == "signature:make,bss_ptr" }?.key)
        let group = groups.first { ($0["samples"] as? [[String: Any]])?.contains { $0["chunk"] as? String == "0x" + String(described, radix: 16) } == true }
        #expect(group?["signature"] as? [String] == ["+0x0 -> make", "+0x8 -> bss_ptr"], "\(group ?? [:])")
        let texted = try #require(expected(p).root.first { $0.value == "signature:text" }?.key)
        let tgroup = groups.first { ($0["samples"] as? [[String: Any]])?.contains { $0["chunk"] as? String == "0x" + String(texted, radix: 16) } == true }
        #expect(tgroup?["signature"] as? [String] == ["text"])
        #expect(((tgroup?["samples"] as? [[String: Any]])?.first?["ascii"] as? String)?.hasPrefix("a leaked string") == true)
        let text = try run(Paths.heapscope, ["leaks", String(p.pid)])
        #expect(text.out.contains("definitely lost:"))
        // --addresses: every chunk of every group, each of the group's class.
        let all = try #require(try jsonObject(run(Paths.heapscope, ["leaks", String(p.pid), "--json", "--show", "reachable", "--addresses", "--limit", "100000"]).out)["groups"] as? [[String: Any]])
        var listed: [String: String] = [:]
        for g in all {
            let a = g["addresses"] as? [String] ?? []
            #expect(a.count == g["chunks"] as? Int, "\(g["class"] ?? "") group of \(g["usable"] ?? ""): \(a.count) addresses for \(g["chunks"] ?? 0) chunks")
            for x in a { listed[x] = g["class"] as? String }
        }
        let classOf = Dictionary(uniqueKeysWithValues: (0..<lib.leaks.blocks.count).map { ("0x" + String(lib.leaks.blocks.start[$0], radix: 16), lib.leaks.leakClass[$0].name) })
        #expect(listed == classOf, "--addresses lists \(listed.count) chunks, the library classifies \(classOf.count)")
        let textAll = try run(Paths.heapscope, ["leaks", String(p.pid), "--addresses"])
        #expect(textAll.out.contains("every chunk:"))
        #expect(p.release().ok)
    }

    @Test("leak groups made in two passes (split at every block) are the groups of one pass: order, counts, samples, signatures, types, addresses")
    func groupsInHalves() throws {
        let p = try TargetProcess("leaks")
        defer { p.release() }
        let r = try Inspector.leaks(pid: p.pid, types: true, typesOfReachable: true)
        // (Its groups of more than three chunks depend on where ASLR puts the heap: a pointer's
        // first bytes can read as text. python3's and perl's heaps have them, always.)
        LeakTests.expectGroupsInHalves(r, splits: Array(0...r.leaks.blocks.count), "leaks", fullSamples: false)
        #expect(p.release().ok)
    }

    /// `LeakGroups.build` split at each of `splits` makes what one pass makes (and the default
    /// split, what one pass makes of the lost chunks). `fullSamples`: the heap must have a group of
    /// more than three chunks (so that merging the halves' samples is exercised).
    static func expectGroupsInHalves(_ r: LeakInspection, splits: [Int], _ what: String, fullSamples: Bool = true,
                                     sourceLocation: SourceLocation = #_sourceLocation) {
        let n = r.leaks.blocks.count
        func fields(_ g: [LeakGroup]) -> [String] {
            g.map { "\($0.leakClass.name) \($0.size) \($0.signature) \($0.type ?? "-") \($0.confidence.name) \($0.count) \($0.samples) \($0.addresses ?? [])" }
        }
        let groups = LeakGroups.build(r, classes: Set(LeakClass.allCases), addresses: true, splitAt: n)
        let one = fields(groups)
        #expect(one.count > 8 && Set(groups.map(\.signature)).count > 2 && (!fullSamples || groups.contains { $0.count > 3 }),
                "\(what): \(one.count) groups: too few to tell a merge from one pass", sourceLocation: sourceLocation)
        for split in splits {
            let two = fields(LeakGroups.build(r, classes: Set(LeakClass.allCases), addresses: true, splitAt: split))
            #expect(two == one, "\(what): split at block \(split) of \(n): \(zip(two, one).first { $0 != $1 }.map { "\($0) vs \($1)" } ?? "\(two.count) vs \(one.count) groups")",
                    sourceLocation: sourceLocation)
        }
        let lost: Set<LeakClass> = [.definitelyLost, .indirectlyLost, .possiblyLost]
        #expect(fields(LeakGroups.build(r, reachable: false)) == fields(LeakGroups.build(r, classes: lost, splitAt: n / 2)), sourceLocation: sourceLocation)
    }

    @Test("chunks --class: exactly the chunks leaks classifies so (each class, and lost), the program's own as its manifest says")
    func chunksByClass() throws {
        let p = try TargetProcess("leaks")
        defer { p.release() }
        let lib = try Inspector.leaks(pid: p.pid)
        let e = expected(p)
        for name in LeakClass.allCases.map(\.name) + ["lost"] {
            let j = try jsonObject(run(Paths.heapscope, ["chunks", String(p.pid), "--class", name, "--json", "--no-types"]).out)
            let rows = Set(try #require(j["chunks"] as? [[String: Any]]).compactMap { ($0["chunk"] as? String).flatMap { UInt64($0.dropFirst(2), radix: 16) } })
            let classes = name == "lost" ? ["definitely_lost", "indirectly_lost"] : [name]
            let want = Set((0..<lib.leaks.blocks.count).filter { classes.contains(lib.leaks.leakClass[$0].name) }.map { lib.leaks.blocks.start[$0] })
            #expect(rows == want, "\(name): \(rows.count) rows, the library classifies \(want.count)")
            let noted = Set(e.byAddress.filter { classes.contains($0.value) }.keys)
            #expect(!noted.isEmpty && noted.isSubset(of: rows), "\(name): the manifest's \(noted.count)")
        }
        #expect(try run(Paths.heapscope, ["chunks", String(p.pid), "--class", "leaky"]).status == 64)
        #expect(p.release().ok)
    }
}

@Suite("Leak group signatures", .timeLimit(.minutes(1)))
struct SignatureTests {
    @Test("four bytes are text exactly when each is printable ASCII (0x20-0x7e), every byte value in every place")
    func printable() {
        func slow(_ v: UInt32) -> Bool { (0..<4).allSatisfy { let c = (v >> ($0 * 8)) & 0xff; return c >= 0x20 && c < 0x7f } }
        var rng = SystemRandomNumberGenerator()
        var values: [UInt32] = []
        for place in 0..<4 {
            for byte in 0..<256 {
                for fill in [0x20, 0x41, 0x7e, 0x00, 0x1f, 0x7f, 0x80, 0xff] as [UInt32] {
                    var v = fill * 0x0101_0101
                    v = v & ~(0xff << (place * 8)) | UInt32(byte) << (place * 8)
                    values.append(v)
                }
            }
        }
        for _ in 0..<100_000 { values.append(UInt32.random(in: 0...UInt32.max, using: &rng)) }
        for v in values { #expect(v.isPrintableASCII == slow(v), "0x\(String(v, radix: 16))") }
    }
}
