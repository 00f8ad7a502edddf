import Foundation
import Glibc
import Analysis
import ProcessAccess
import Testing

/// `stat`'s account of resident memory: its lines sum to the RSS the kernel reports, and each
/// line holds what an independent reading of /proc/PID/pagemap over the program's own ranges
/// (its manifest) says is resident there. On TestTargets/pool.c (a custom pool, heap chunks,
/// chunks mapped on their own, a second thread) and on Debian's python3 (pymalloc's arenas,
/// against the interpreter's own sys._debugmallocstats()).
@Suite("Where RSS went", .serialized, .timeLimit(.minutes(3)))
struct MemoryTests {
    /// Bytes of [start, end) in present pages (pagemap bit 63), read by the test itself.
    static func present(pid: Int32, _ ranges: [(UInt64, UInt64)]) throws -> UInt64 {
        let fd = open("/proc/\(pid)/pagemap", O_RDONLY)
        guard fd >= 0 else { throw HarnessError(description: "cannot open /proc/\(pid)/pagemap") }
        defer { close(fd) }
        var total: UInt64 = 0
        for (s, e) in ranges where e > s {
            var page = s & ~4095
            while page < e {
                var entry: UInt64 = 0
                guard pread(fd, &entry, 8, off_t(page / 4096 * 8)) == 8 else { throw HarnessError(description: "pagemap read failed") }
                if entry >> 63 == 1 { total += min(e, page + 4096) - max(s, page) }
                page += 4096
            }
        }
        return total
    }

    static func rollupRSS(_ pid: Int32) throws -> UInt64 {
        let text = try String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("Rss:") })
        return try #require(UInt64(line.split(separator: " ")[1])) * 1024
    }

    func lines(_ j: [String: Any]) throws -> [[String: Any]] {
        try #require((j["memory"] as? [String: Any])?["lines"] as? [[String: Any]])
    }

    @Test("a custom pool, heap chunks, mapped chunks, a thread: every line as pagemap says, summing to the kernel's RSS; watch, snapshot and diff carry it")
    func pool() throws {
        let p = try TargetProcess("pool")
        defer { p.release() }
        let j = try jsonObject(run(Paths.heapscope, ["stat", String(p.pid), "--json"]).out)
        let memory = try #require(j["memory"] as? [String: Any])
        let l = try lines(j)
        func rss(_ id: String) -> Int? { l.first { $0["id"] as? String == id }?["rss_bytes"] as? Int }
        let sum = l.reduce(0) { $0 + ($1["rss_bytes"] as? Int ?? 0) }
        #expect(sum == memory["rss_bytes"] as? Int, "\(l)")
        #expect(UInt64(sum) == (try Self.rollupRSS(p.pid)), "the kernel's RSS (smaps_rollup) of the idle target")
        #expect(rss("unexplained") == 0)
        // The pool: 3 MiB written of 8 MiB, named by the global that holds it.
        let note = try #require(p.manifestText.split(separator: "\n").first { $0.hasPrefix("pool ") }?.split(separator: " "))
        let written = try #require(Int(note[2]))
        let pool = l.first { $0["name"] as? String == "anonymous memory pointed to by pool (pool)" }
        #expect(pool?["rss_bytes"] as? Int == written, "\(l)")
        // Heap chunks in use and chunks mapped on their own: what pagemap says of their ranges.
        let heapChunks = p.manifest.live.filter { !p.manifest.mmapped.contains($0.key) }.map { ($0.key - 16, $0.key - 16 + $0.value + 8) }
        let mappedChunks = p.manifest.live.filter { p.manifest.mmapped.contains($0.key) }.map { ($0.key - 16, ($0.key + $0.value + 4095) & ~4095) }
        #expect(mappedChunks.count == 2)
        #expect(rss("malloc_in_use") == Int(try Self.present(pid: p.pid, heapChunks)))
        #expect(rss("mmapped_chunks") == Int(try Self.present(pid: p.pid, mappedChunks)))
        #expect((rss("thread_stacks") ?? 0) > 0 && (rss("malloc_free") ?? 0) > 0 && (rss("malloc_metadata") ?? 0) < 64 << 10, "\(l)")
        // Text: the same lines.
        let text = try run(Paths.heapscope, ["stat", String(p.pid)]).out
        #expect(text.contains("resident memory (RSS ") && text.contains("anonymous memory pointed to by pool (pool)"), "\(text)")
        // watch: the RSS per sample.
        let w = try run(Paths.heapscope, ["watch", String(p.pid), "--count", "1", "--json"])
        let sample = try jsonObject(String(w.out.split(separator: "\n")[0]))
        #expect(sample["rss_bytes"] as? Int == sum)
        // A snapshot keeps the account; stat of it prints it; diff has it among the causes.
        let dir = try temporaryDirectory("rss")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", dir + "/a.snap"]).status == 0)
        let fromFile = try jsonObject(run(Paths.heapscope, ["stat", dir + "/a.snap", "--json"]).out)
        let fileLines = try lines(fromFile)
        #expect(fileLines.count == l.count && (fromFile["memory"] as? [String: Any])?["rss_bytes"] as? Int == sum)
        let d = try jsonObject(run(Paths.heapscope, ["diff", dir + "/a.snap", dir + "/a.snap", "--json"]).out)
        let causes = try #require(d["causes"] as? [[String: Any]])
        #expect(causes.first { $0["id"] as? String == "rss" }?["a"] as? Int == sum)
        #expect(causes.first { $0["id"] as? String == "rss_malloc_in_use" }?["b"] as? Int == rss("malloc_in_use"))
        #expect(p.release().ok)
    }

    @Test("python3: pymalloc's arenas are their own lines, holding at least the bytes of its allocated blocks and at most its arenas (sys._debugmallocstats)")
    func python() throws {
        let dir = try temporaryDirectory("py")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = """
        import sys, os
        keep = [(i, str(i)) for i in range(200000)]
        sys._debugmallocstats()
        print(os.getpid(), flush=True)
        sys.stdin.read()
        """
        try script.write(toFile: dir + "/s.py", atomically: true, encoding: .utf8)
        let child = try Spawned.start("/usr/bin/python3", [dir + "/s.py"], stdout: dir + "/out", stderr: dir + "/err")
        defer { close(child.stdinFD); _ = child.wait(timeoutSeconds: 30) }
        let deadline = Date().addingTimeInterval(30)
        var pid: Int32 = 0
        while Date() < deadline, pid == 0 {
            pid = Int32(((try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            usleep(20000)
        }
        try #require(pid > 0, "python3 did not start")
        let stats = try String(contentsOfFile: dir + "/err", encoding: .utf8).split(separator: "\n")
        func stat(_ key: String) throws -> Int {
            let line = try #require(stats.first { $0.hasPrefix(key) }, "\(key) in sys._debugmallocstats()")
            return try #require(Int(line.split(separator: "=").last!.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: ",", with: "")))
        }
        let arenas = try stat("# arenas allocated current"), blocks = try stat("# bytes in allocated blocks")
        let j = try jsonObject(run(Paths.heapscope, ["stat", String(pid), "--json"]).out)
        let l = try lines(j)
        let sum = l.reduce(0) { $0 + ($1["rss_bytes"] as? Int ?? 0) }
        #expect(sum == (j["memory"] as? [String: Any])?["rss_bytes"] as? Int)
        let pymalloc = l.filter { ($0["name"] as? String).map { $0.contains("arenas (python3") || $0.contains("usedpools (python3") } ?? false }
        let bytes = pymalloc.reduce(0) { $0 + ($1["rss_bytes"] as? Int ?? 0) }
        #expect(!pymalloc.isEmpty && bytes >= blocks && bytes <= arenas << 20, "pymalloc lines \(bytes) B; python: \(blocks) B in blocks, \(arenas) arenas; \(l)")
    }

    /// Per mapping: its present pages (as the test reads pagemap itself).
    static func presentPages(_ pid: Int32) throws -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for line in try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8).split(separator: "\n") {
            let range = line.split(separator: " ")[0].split(separator: "-").compactMap { UInt64($0, radix: 16) }
            // ([vsyscall] is not in pagemap; the vDSO's pages are the kernel's, mapped when libdw reads
            // its ELF image from the process)
            guard range.count == 2, range[1] - range[0] <= 64 << 20, range[1] <= 1 << 47, !line.hasSuffix("[vdso]") else { continue }
            out[String(line.split(separator: " ")[0])] = try present(pid: pid, [(range[0], range[1])])
        }
        return out
    }

    @Test("reading never maps a page into the target: every mapping has the same present pages, and the RSS is the same, after stat, leaks, types, chunks and snapshot")
    func noPageMapped() throws {
        let p = try TargetProcess("pool")
        defer { p.release() }
        let before = try Self.presentPages(p.pid), rss = try Self.rollupRSS(p.pid)
        let dir = try temporaryDirectory("pages")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for args in [["stat"], ["leaks"], ["types"], ["chunks"], ["snapshot", "-o", dir + "/s.snap"]] {
            let r = try run(Paths.heapscope, [args[0], String(p.pid)] + args.dropFirst())
            #expect(r.status == 0, "\(args): \(r.err)")
        }
        let after = try Self.presentPages(p.pid)
        for (m, n) in after where before[m] != n { Issue.record("mapping \(m): \(before[m] ?? 0) bytes present before, \(n) after") }
        #expect(try Self.rollupRSS(p.pid) <= rss + 8192, "at most the vDSO's pages")
        #expect(p.release().ok)
    }
}

/// `--spill DIR`: the copy goes to an unnamed file (O_TMPFILE, mode 0600) in DIR instead of
/// heapscope's memory, with the same results; a DIR that cannot hold the copy is refused
/// before the target is stopped.
@Suite("Copies spilled to a file", .serialized, .timeLimit(.minutes(3)))
struct SpillTests {
    @Test("leaks --spill DIR: the copy is a 0600 unnamed file in DIR; the same leak classes and heap as without")
    func spill() throws {
        guard access("/usr/bin/strace", X_OK) == 0 else { throw HarnessError(description: "strace is missing (make deps installs it)") }
        let p = try TargetProcess("leaks")
        defer { p.release() }
        let dir = try temporaryDirectory("spill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plain = try run(Paths.heapscope, ["leaks", String(p.pid), "--json"])
        #expect(plain.status == 0, "\(plain.err)")
        let log = dir + "/strace.log"
        let spilled = try run("/usr/bin/strace", ["-f", "-qq", "-e", "trace=openat", "-o", log, Paths.heapscope, "leaks", String(p.pid), "--json", "--spill", dir])
        #expect(spilled.status == 0, "\(spilled.err)")
        let opens = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").filter { $0.contains("\"\(dir)\"") }
        #expect(opens.count == 1 && opens.allSatisfy { $0.contains("O_TMPFILE") && $0.contains("0600") && !$0.contains("= -1") }, "\(opens)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["strace.log"], "nothing named is left in DIR")
        let a = try jsonObject(plain.out), b = try jsonObject(spilled.out)
        for k in ["definitely_lost", "indirectly_lost", "possibly_lost", "still_reachable"] {
            for f in ["chunks", "bytes"] {
                #expect((a[k] as? [String: Any])?[f] as? Int == (b[k] as? [String: Any])?[f] as? Int, "\(k) \(f)")
            }
        }
        // And they are the target's own account of what it made (LeakTests checks each chunk).
        let want = LeakTests().expected(p).byAddress
        for c in LeakClass.allCases where c != .stillReachable {
            #expect((b[c.name] as? [String: Any])?["chunks"] as? Int == want.values.filter { $0 == c.name }.count, "\(c.name)")
        }
        let s = try jsonObject(run(Paths.heapscope, ["stat", String(p.pid), "--json", "--spill", dir]).out)
        #expect(s["spill_dir"] as? String == dir)
        // watch takes it too: each sample's copy is such a file.
        let wlog = dir + "/watch.log"
        let w = try run("/usr/bin/strace", ["-f", "-qq", "-e", "trace=openat", "-o", wlog, Paths.heapscope, "watch", String(p.pid), "--count", "2", "--interval", "100ms", "--json", "--spill", dir])
        #expect(w.status == 0, "\(w.err)")
        let wopens = try String(contentsOfFile: wlog, encoding: .utf8).split(separator: "\n").filter { $0.contains("\"\(dir)\"") && $0.contains("O_TMPFILE") }
        #expect(wopens.count == 2 && wopens.allSatisfy { !$0.contains("= -1") }, "\(wopens)")
    }

    @Test("--spill into a file system too small for the copy: refused before the stop, saying how much is needed and free")
    func tooSmall() throws {
        let p = try TargetProcess("leaks")
        defer { p.release() }
        let dir = try temporaryDirectory("spill-small")
        defer { _ = try? run("/bin/umount", [dir]); try? FileManager.default.removeItem(atPath: dir) }
        let m = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir])
        guard m.status == 0 else { throw HarnessError(description: "mounting a 64 KiB tmpfs failed (the tests run as root): \(m.err)") }
        let r = try run(Paths.heapscope, ["stat", String(p.pid), "--spill", dir])
        #expect(r.status == 1)
        #expect(r.err.contains("free space in --spill \(dir)") && r.err.contains("the target was not stopped"), "\(r.err)")
        let bad = try run(Paths.heapscope, ["stat", String(p.pid), "--spill", dir + "/none"])
        #expect(bad.status == 64 && bad.err.contains("--spill takes an existing directory"), "\(bad.err)")
    }
}

/// A snapshot taken without contents gives its copy back once labelled (MemoryImage.discardContents).
@Suite("Copies given back", .timeLimit(.minutes(1)))
struct DiscardTests {
    @Test("discardContents: pooled regions (anonymous and spilled to a file) and regions mapped on their own read as zeros after it, and their pages leave heapscope's RSS")
    func discard() throws {
        for spill in [nil, "/tmp"] as [String?] {
            let pool = BufferPool(bytes: 64 << 20, spill: spill)
            #expect(pool.capacity >= 64 << 20 && pool.spilled == (spill != nil))
            let pooled = try #require(Region(start: 0x10000, count: 48 << 20, label: "pooled", pool: pool))
            let own = try #require(Region(start: 0x1_0000_0000, count: 32 << 20, label: "own"))   // (>= 4 MiB: mapped on its own)
            for r in [pooled, own] { r.base.initializeMemory(as: UInt8.self, repeating: 0xa5, count: r.count) }
            let image = MemoryImage()
            image.add(pooled); image.add(own)
            #expect(image.word(0x10000) == 0xa5a5_a5a5_a5a5_a5a5 && image.word(0x1_0000_0000 + 8) == 0xa5a5_a5a5_a5a5_a5a5)
            let before = ProcFS.ownMemoryKilobytes().rss
            image.discardContents()
            let after = ProcFS.ownMemoryKilobytes().rss
            for r in [pooled, own] {
                for off in stride(from: 0, to: r.count, by: 1 << 20) { #expect(r.word(r.start + UInt64(off)) == 0, "\(r.label) +\(off)") }
            }
            #expect(before - after >= 70 << 10, "RSS \(before) KiB -> \(after) KiB (\(spill ?? "anonymous"))")
        }
    }
}
