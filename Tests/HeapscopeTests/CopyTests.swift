import Foundation
import Glibc
import ProcessAccess
import Testing

/// What a leak check copies while the target is stopped (TestTargets/reserve.c): resident pages,
/// not reservations; stacks from their stack pointers; shared memory only when asked.
@Suite("Pauses bound to what must be copied", .serialized, .timeLimit(.minutes(10)))
struct CopyTests {
    func value(_ p: TargetProcess, _ key: String) -> [String] {
        p.manifestText.split(separator: "\n").filter { $0.hasPrefix(key + " ") }.map { String($0.dropFirst(key.count + 1)) }
    }
    func chunk(_ p: TargetProcess, _ name: String) throws -> UInt64 {
        let f = try #require(value(p, "chunk").first { $0.hasPrefix(name + " ") }).split(separator: " ")
        return try #require(UInt64(f[1], radix: 16))
    }
    func copy(_ j: [String: Any]) throws -> [String: Int] {
        try #require(j["copy"] as? [String: Any]).compactMapValues { $0 as? Int }
    }

    @Test("4 GiB and 16 GiB untouched reservations and 64 MiB of shared memory: only resident pages copied; exact leak classes with and without --shared-roots")
    func reservations() throws {
        for gib in [4, 16] {
            let p = try TargetProcess("reserve", args: ["reserve", String(gib), "shared", "64"])
            let viaReservation = try chunk(p, "via-reservation"), viaShared = try chunk(p, "via-shared")
            let r = try run(Paths.heapscope, ["leaks", String(p.pid), "--json"])
            #expect(r.status == 0, "\(r.err)")
            let j = try jsonObject(r.out)
            let c = try copy(j)
            // The reservation less its one written page, and nothing of the shared mapping.
            #expect(c["unresident_not_copied_bytes"]! >= (gib << 30) - 4096, "\(c)")
            #expect(c["shared_not_copied_bytes"] == 64 << 20)
            #expect(c["beyond_heap_bytes"]! < 16 << 20, "copied \(c["beyond_heap_bytes"]!) bytes besides the heap")
            #expect(c["below_stack_pointer_bytes"]! > 0)
            // The chunk held only by the written page of the reservation is reachable; the one held
            // only by shared memory is lost unless shared memory is a root.
            let lost = try #require(j["definitely_lost"] as? [String: Int])
            #expect(lost["chunks"] == 1 && lost["bytes"] == 312, "malloc(300): \(lost)")
            var why = try run(Paths.heapscope, ["why", String(p.pid), "0x" + String(viaShared, radix: 16)])
            #expect(why.out.contains("definitely lost"), "\(why.out)")
            why = try run(Paths.heapscope, ["why", String(p.pid), "0x" + String(viaReservation, radix: 16)])
            #expect(why.out.contains("still reachable") && why.out.contains("anonymous"), "\(why.out)")
            let s = try jsonObject(run(Paths.heapscope, ["leaks", String(p.pid), "--json", "--shared-roots"]).out)
            #expect(try copy(s)["shared_not_copied_bytes"] == 0 && (try copy(s)["beyond_heap_bytes"]!) >= 64 << 20)
            #expect((s["definitely_lost"] as? [String: Int])?["chunks"] == 0)
            #expect((s["roots"] as? [String: Int])?["shared"] == 64 << 20)
            #expect(!anyThreadStopped(p))
            #expect(p.release().ok)
        }
    }

    @Test("60,000 mappings: every written page copied once, the leak check exact")
    func manyMappings() throws {
        let p = try TargetProcess("reserve", args: ["maps", "30000"])
        let maps = try ProcFS.maps(pid: p.pid)
        #expect(maps.count >= 60_000)
        let r = try run(Paths.heapscope, ["leaks", String(p.pid), "--json", "--max-stop", "30s"], timeout: 120)
        #expect(r.status == 0, "\(r.err)")
        let j = try jsonObject(r.out)
        #expect(try copy(j)["beyond_heap_bytes"]! >= 30000 * 4096)
        #expect((j["definitely_lost"] as? [String: Int])?["chunks"] == 0)
        #expect((j["still_reachable"] as? [String: Int])?["chunks"] == 1, "the anchor chunk")
        #expect(p.release().ok)
    }

    @Test("10,000 threads: every thread held and counted; stacks copied from their stack pointers")
    func manyThreads() throws {
        let p = try TargetProcess("reserve", args: ["threads", "10000"])
        let threads = try #require(Int(value(p, "threads").first ?? ""))
        #expect(threads == 10_001)
        let s = try jsonObject(run(Paths.heapscope, ["stat", String(p.pid), "--json", "--max-stop", "30s"], timeout: 120).out)
        #expect(s["threads"] as? Int == threads)
        let r = try run(Paths.heapscope, ["leaks", String(p.pid), "--json", "--max-stop", "30s"], timeout: 120)
        #expect(r.status == 0, "\(r.err)")
        let j = try jsonObject(r.out)
        let c = try copy(j)
        // Each thread's 64 KiB stack holds its descriptor and TLS at the top and a few frames: far
        // more lies below the stack pointers than above them.
        #expect(c["below_stack_pointer_bytes"]! > 10_000 * 32 << 10, "\(c)")
        #expect((j["definitely_lost"] as? [String: Int])?["chunks"] == 0)
        #expect(!anyThreadStopped(p))
        #expect(p.release().ok)
    }
}

@Suite("Memory heapscope may use", .serialized, .timeLimit(.minutes(3)))
struct MemoryLimitTests {
    @Test("a copy larger than heapscope's cgroup allows is refused before the target is stopped")
    func cgroupLimit() throws {
        let line = try #require(try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8).split(separator: "\n")
            .first { $0.split(separator: ":", omittingEmptySubsequences: false)[1].split(separator: ",").contains("memory") || $0.hasPrefix("0::") },
            "no memory cgroup for this test")
        let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        let v2 = f[0] == "0"
        let dir = (v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory") + f[2] + "/heapscope-test-\(getpid())"
        try #require(mkdir(dir, 0o755) == 0, "cannot create the cgroup \(dir): \(String(cString: strerror(errno)))")
        defer { rmdir(dir) }
        try (String(64 << 20) + "\n").write(toFile: dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"), atomically: false, encoding: .utf8)
        // A heap of about 128 MiB to copy.
        let p = try TargetProcess("bigheap", args: ["0", "2000000"])
        let r = try run("/bin/sh", ["-c", "echo $$ > \(dir)/cgroup.procs && exec \(Paths.heapscope) stat \(p.pid)"])
        #expect(r.status == 1, "\(r.status) \(r.err)")
        #expect(r.err.contains("copying pid \(p.pid)'s memory needs ") && r.err.contains("(heapscope's cgroup memory limit); the target was not stopped"), "\(r.err)")
        #expect(try ProcFS.status(pid: p.pid)["TracerPid"] == "0")
        #expect(p.release().ok)
    }
}
