import Foundation
import Glibc
import Testing

/// TestTargets/corruptions.c: one corruption per run, each once a loop that ate the host's memory
/// or a Swift trap (some while the target was stopped). Every command must exit 2 naming it,
/// still walk the rest of the heap (the 64 marker chunks allocated below the damage), and leave
/// the target running.
@Suite("Corrupted heaps", .serialized, .timeLimit(.minutes(5)))
struct CorruptionTests {
    static let cases: [(name: String, kind: String, says: String)] = [
        ("fastbin_size_max", "corrupt_chunk", "size field 0xfffffffffffffff1 is invalid"),
        ("unsorted_size_max", "corrupt_chunk", "size field 0xfffffffffffffff1 is invalid"),
        ("top_size_max", "corrupt_arena", "main arena top chunk"),
        ("thread_top_size_max", "corrupt_arena", "arena 1 top chunk"),
        ("system_mem_huge", "corrupt_arena", "system_mem is 18446744073709486080 bytes"),
        ("sbrk_base_small", "corrupt_arena", "mp_.sbrk_base 0x10 is not in a mapping"),
        ("sbrk_base_high", "corrupt_arena", "mp_.sbrk_base 0xfffffffffffffff0 is not in a mapping"),
        ("mp_all_ff", "corrupt_arena", "mp_.sbrk_base 0xffffffffffffffff is not in a mapping"),
        ("non_main_arena_flag", "corrupt_chunk", "of arena 0: NON_MAIN_ARENA is set"),
        ("large_nextsize", "corrupt_list", "fd_nextsize 0x4141414141414140 is not a chunk of this bin"),
    ]

    @Test("exit 2 with the named warning, the rest of the heap walked, the target running", arguments: CorruptionTests.cases.map(\.name))
    func corruption(name: String) throws {
        let c = CorruptionTests.cases.first { $0.name == name }!
        let p = try TargetProcess("corruptions", args: [name])
        defer { p.release() }
        let markers = Set(p.manifestText.split(separator: "\n").filter { $0.hasPrefix("marker ") }.compactMap { UInt64($0.split(separator: " ")[1], radix: 16) })
        #expect(markers.count == 64)
        let pid = String(p.pid)
        let stat = try run(Paths.heapscope, ["stat", "--json", pid])
        #expect(stat.status == 2, "\(name): stat exited \(stat.status): \(stat.err)")
        let warnings = (try jsonObject(stat.out)["warnings"] as? [[String: Any]]) ?? []
        #expect(warnings.contains { $0["kind"] as? String == c.kind && ($0["message"] as? String)?.contains(c.says) == true },
                "\(name): \(warnings)")
        let chunks = (try jsonObject(run(Paths.heapscope, ["chunks", "--json", "--limit", "100000", pid]).out)["chunks"] as? [[String: Any]]) ?? []
        let inUse = Set(chunks.filter { $0["state"] as? String == "in_use" }.compactMap { ($0["chunk"] as? String).flatMap { UInt64($0.dropFirst(2), radix: 16) } })
        #expect(markers.isSubset(of: inUse), "\(name): \(markers.subtracting(inUse).count) marker chunks not walked")
        for command in ["leaks", "types", "chunks"] {
            let r = try run(Paths.heapscope, [command, pid])
            #expect(r.status == 2, "\(name): \(command) exited \(r.status): \(r.err.prefix(2000))")
        }
        let dir = try temporaryDirectory("corrupt")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let snap = try run(Paths.heapscope, ["snapshot", pid, "-o", "\(dir)/s"])
        #expect(snap.status == 2 && access("\(dir)/s", R_OK) == 0 && snap.err.contains(c.kind), "\(name): snapshot exited \(snap.status): \(snap.err)")
        // Running, not stopped, not traced.
        #expect(kill(p.pid, 0) == 0)
        #expect(!p.threadStates().contains { $0 == "t" || $0 == "T" }, "\(p.threadStates())")
        let status = try String(contentsOfFile: "/proc/\(p.pid)/status", encoding: .utf8)
        #expect(status.contains("TracerPid:\t0\n"))
        try expectSameWalkInPieces(pid: p.pid, name)
    }

    /// TestTargets/heap_fuzz.c: a heap of 3 arenas, every kind of bin, mmapped chunks, with 40
    /// random words of its chunk headers and free-list links overwritten (random, extreme, a bit
    /// flipped, a pointer to another chunk), one seed per case.
    @Test("a heap damaged at random: every command exits 0 or 2, never crashes or hangs, the target runs on", arguments: Array(1...12))
    func randomDamage(seed: Int) throws {
        let p = try TargetProcess("heap_fuzz", args: [String(seed), "40"])
        defer { p.release() }
        for command in [["stat"], ["leaks"], ["types"], ["chunks", "--json"]] {
            let r = try run(Paths.heapscope, command + [String(p.pid)], timeout: 60)
            #expect([0, 2].contains(r.status), "seed \(seed): \(command[0]) exited \(r.status): \(r.err.prefix(3000))")
        }
        #expect(kill(p.pid, 0) == 0 && !p.threadStates().contains { $0 == "t" || $0 == "T" })
        #expect(try String(contentsOfFile: "/proc/\(p.pid)/status", encoding: .utf8).contains("TracerPid:\t0\n"))
        try expectSameWalkInPieces(pid: p.pid, "seed \(seed)")
    }
}
