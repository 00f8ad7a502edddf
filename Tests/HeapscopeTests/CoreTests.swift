import Foundation
import Glibc
import Inspect
import ProcessAccess
import Snapshot
import Testing

/// Core files as a source: for every TestTarget, what heapscope says of the live process, of its
/// gcore core file (taken while it waits) and of the core the kernel writes when it is killed
/// with SIGABRT (read-only file-backed segments left out) is the same: stat, chunks, leaks (classes
/// and groups), types, why and show; of its snapshot with contents, the same less what a
/// snapshot does not record. `sym --core` names addresses as `sym --pid` does.
@Suite("Core files", .serialized, .timeLimit(.minutes(10)))
struct CoreTests {
    /// The targets, with their arguments: every one that holds a heap in a known state.
    static let targets: [(String, [String])] = [
        ("heap_kinds", []), ("heap_kinds_static", []), ("phases", []), ("types", []), ("typed", []),
        ("typedef_cycle", []), ("leaks", []), ("threads", []), ("noncontig", []), ("bigheap", ["0", "20000"]),
        ("corrupt", []), ("resemble", []), ("cxxstd", []),
    ]

    /// Keys whose values describe how the image was read, not what it holds.
    static let howRead: Set<String> = [
        "pause_us", "attempts", "attempt_pause_us", "max_stop_us", "side_effects", "copied_bytes", "analysis_us",
        "peak_rss_kb", "buffer_fault_us", "core_file", "copy", "scanned_bytes", "debug_info_us", "propagation_us",
        // where the resident memory went: read from /proc of a live process, not in a core
        "memory",
    ]

    static func normalized(_ v: Any) -> Any {
        if let d = v as? [String: Any] {
            var out: [String: Any] = [:]
            for (k, x) in d where !howRead.contains(k) { out[k] = normalized(x) }
            return out
        }
        if let a = v as? [Any] { return a.map(normalized) }
        return v
    }

    /// Each command's JSON (less `howRead`) and exit status, on `target` (a pid or a core file).
    static func results(_ target: String, address: UInt64) throws -> [String: String] {
        var out: [String: String] = [:]
        let commands: [(String, [String])] = [
            ("stat", ["stat", target, "--json"]), ("chunks", ["chunks", target, "--json"]),
            ("leaks", ["leaks", target, "--json", "--show", "reachable"]), ("types", ["types", target, "--json"]),
            ("why", ["why", target, hex(address), "--json"]), ("show", ["show", target, hex(address), "--json"]),
        ]
        for (name, args) in commands {
            let r = try run(Paths.heapscope, args, timeout: 120)
            guard let data = r.out.data(using: .utf8), let json = try? JSONSerialization.jsonObject(with: data) else {
                throw HarnessError(description: "\(args.joined(separator: " ")) printed no JSON (exit \(r.status)): \(r.err)")
            }
            let canonical = try JSONSerialization.data(withJSONObject: normalized(json), options: [.sortedKeys])
            out[name] = "exit \(r.status) " + String(decoding: canonical, as: UTF8.self)
        }
        return out
    }

    static func hex(_ a: UInt64) -> String { "0x" + String(a, radix: 16) }

    /// The kernel writes cores to "core" (or "core.PID") in the process's directory when
    /// kernel.core_pattern is "core"; otherwise (a pipe to systemd-coredump or apport, another
    /// path) the test makes the same kind of core from gcore's, leaving out what the kernel leaves
    /// out: the contents of read-only file-backed mappings. It says which it did.
    static var kernelWritesCoreHere: Bool {
        ((try? String(contentsOfFile: "/proc/sys/kernel/core_pattern", encoding: .utf8)) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines) == "core"
    }

    @Test("live, snapshot with contents, gcore and kernel core give the same results", arguments: CoreTests.targets.map(\.0))
    func sameAsLive(_ name: String) throws {
        let args = Self.targets.first { $0.0 == name }!.1
        let dir = try temporaryDirectory("core")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Started from `dir` with cores allowed, so that the kernel's core lands there.
        let p = try TargetProcess("/bin/sh", args: args, launcher: ["/bin/sh", "-c", "cd \(dir) && ulimit -c unlimited && exec \"$0\" \"$@\"", Paths.target(name)])
        defer { p.release() }
        // why and show ask about the lowest outstanding chunk the program noted (or, for programs
        // that note none, the first chunk in use).
        var address = p.manifest.live.keys.min() ?? 0
        if address == 0 {
            let rows = try jsonObject(run(Paths.heapscope, ["chunks", String(p.pid), "--json", "--no-types", "--state", "in_use"]).out)["chunks"] as? [[String: Any]]
            address = try #require(rows?.first.flatMap { ($0["chunk"] as? String).flatMap { UInt64($0.dropFirst(2), radix: 16) } }, "\(name): no chunk in use")
        }
        let live = try Self.results(String(p.pid), address: address)
        for (k, v) in live { #expect(v.hasPrefix("exit 0 ") || (name == "corrupt" && v.hasPrefix("exit 2 ")), "\(name) \(k): \(v.prefix(300))") }

        // A snapshot with contents, the third source. It records no mappings, roots or DWARF
        // layouts: leak groups' symbol signatures (so groups are compared by class, size and
        // type), why's chain (a typed path instead) and show's decoded fields and symbol names are
        // what it cannot give; everything else is the same.
        let snap = dir + "/s.snap"
        let taken = try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", snap, "--contents"], timeout: 120)
        try #require(taken.status == 0 || (name == "corrupt" && taken.status == 2), "snapshot failed: \(taken.err)")
        let fromSnapshot = try Self.results(snap, address: address)
        // The snapshot against itself: every outstanding chunk survives with its bytes.
        let selfDiff = try jsonObject(run(Paths.heapscope, ["diff", snap, snap, "--json"]).out)
        let table = try SnapshotFile.read(snap).report.chunks
        let outstanding = (0..<table.count).filter(table.isOutstanding).count
        func chunks(_ k: String) -> Int? { (selfDiff[k] as? [String: Any])?["chunks"] as? Int }
        #expect(chunks("new") == 0 && chunks("gone") == 0 && selfDiff["changed"] as? Int == 0 && outstanding > 0
                && chunks("survivors") == outstanding, "\(name): self-diff \(selfDiff.filter { $0.key != "groups" })")
        func lessOf(_ v: String, _ drop: Set<String>) -> String {
            guard let i = v.firstIndex(of: "{"), let data = v[i...].data(using: .utf8), let o = try? JSONSerialization.jsonObject(with: data) else { return v }
            func strip(_ x: Any) -> Any {
                if let d = x as? [String: Any] { return d.filter { !drop.contains($0.key) }.mapValues(strip) }
                if let a = x as? [Any] { return a.map(strip) }
                return x
            }
            var top = strip(o)
            // Leak groups: without symbol signatures, groups that differ only by them are one;
            // compared as chunks per class, size and type.
            if drop.contains("signature"), var d = top as? [String: Any], let groups = d["groups"] as? [[String: Any]] {
                var sum: [String: Int] = [:]
                for g in groups { sum["\(g["class"] ?? "") \(g["usable"] ?? "") \(g["type"] ?? "-") \(g["confidence"] ?? "")", default: 0] += g["chunks"] as? Int ?? 0 }
                d["groups"] = sum.keys.sorted().map { "\($0): \(sum[$0]!)" }
                top = d
            }
            let c = (try? JSONSerialization.data(withJSONObject: top, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? ""
            return String(v[..<i]) + c
        }
        let notRecorded: [String: Set<String>] = ["leaks": ["signature"], "why": ["chain", "reason", "from_snapshot"], "show": ["fields", "words"]]
        for k in live.keys.sorted() {
            let drop = notRecorded[k] ?? []
            #expect(lessOf(fromSnapshot[k]!, drop) == lessOf(live[k]!, drop), "\(name) \(k) from the snapshot differs:\n live: \(live[k]!.prefix(600))\n snapshot: \(fromSnapshot[k]!.prefix(600))")
        }

        // gcore, while the program waits.
        let g = try run("/usr/bin/gcore", ["-o", dir + "/g", String(p.pid)], timeout: 120)
        let gcore = dir + "/g.\(p.pid)"
        try #require(g.status == 0 && FileManager.default.fileExists(atPath: gcore), "gcore failed: \(g.err.suffix(500))")
        let fromGcore = try Self.results(gcore, address: address)
        for k in live.keys.sorted() { #expect(fromGcore[k] == live[k], "\(name) \(k) from gcore's core differs:\n live: \(live[k]!.prefix(600))\n core: \(fromGcore[k]!.prefix(600))") }

        // The kernel's core, from SIGABRT (the process dies).
        var kernelCore: String
        if Self.kernelWritesCoreHere {
            kill(p.pid, SIGABRT)
            let (_, status, _) = p.release()
            try #require(status & 0x7f == SIGABRT && status & 0x80 != 0, "\(name) did not dump core on SIGABRT (status \(status))")
            kernelCore = FileManager.default.fileExists(atPath: dir + "/core") ? dir + "/core" : dir + "/core.\(p.pid)"
        } else {
            print("kernel.core_pattern is not \"core\": the kernel-style core of \(name) is gcore's, less read-only file-backed contents")
            kernelCore = dir + "/kernel-style"
            try Self.dropReadOnlyFileSegments(gcore, to: kernelCore)
        }
        let core = try CoreFile(path: kernelCore)
        // It is kernel-style: code and read-only data of the mapped files are not in it.
        let leftOut = core.segments.filter { s in s.flags & 2 == 0 && s.filesz < s.memsz && core.files.contains { $0.start <= s.vaddr && $0.end >= s.end } }
        #expect(leftOut.count >= 2, "\(name): no read-only file-backed segment left out of \(kernelCore)")
        let fromKernel = try Self.results(kernelCore, address: address)
        for k in live.keys.sorted() { #expect(fromKernel[k] == live[k], "\(name) \(k) from the kernel's core differs:\n live: \(live[k]!.prefix(600))\n core: \(fromKernel[k]!.prefix(600))") }
    }

    /// A copy of core file `from` whose read-only segments that map files hold nothing (p_filesz 0),
    /// as the kernel writes them by default (coredump_filter 0x33).
    static func dropReadOnlyFileSegments(_ from: String, to: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: from)))
        let core = try CoreFile(path: from)
        func u64(_ p: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[p + $1]) << (8 * UInt64($1)) } }
        func u16(_ p: Int) -> Int { Int(bytes[p]) | Int(bytes[p + 1]) << 8 }
        let phoff = Int(u64(32)), size = u16(54), count = u16(56)
        for i in 0..<count {
            let p = phoff + i * size
            let type = Int(bytes[p]) | Int(bytes[p + 1]) << 8, flags = Int(bytes[p + 4])
            let vaddr = u64(p + 16), memsz = u64(p + 40)
            guard type == 1, flags & 2 == 0, core.files.contains(where: { $0.start <= vaddr && $0.end >= vaddr + memsz }) else { continue }
            for k in 0..<8 { bytes[p + 32 + k] = 0 }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: to))
    }

    /// The same core with its notes moved in front of the memory, where the kernel writes them
    /// (gcore writes them last): every segment's offset moves by the notes' size.
    static func notesFirst(_ b: [UInt8]) -> [UInt8] {
        func u64(_ p: Int) -> Int { (0..<8).reduce(0) { $0 | Int(b[p + $1]) << (8 * $1) } }
        func u16(_ p: Int) -> Int { Int(b[p]) | Int(b[p + 1]) << 8 }
        let phoff = u64(32), size = u16(54), count = u16(56), tableEnd = phoff + size * count
        guard let n = (0..<count).first(where: { b[phoff + $0 * size] == 4 }) else { return b }
        let noteOff = u64(phoff + n * size + 8), noteSize = u64(phoff + n * size + 32)
        var out = Array(b[0..<tableEnd]) + b[noteOff..<noteOff + noteSize] + b[tableEnd..<noteOff] + b[(noteOff + noteSize)...]
        for i in 0..<count {
            let at = phoff + i * size + 8
            let off = i == n ? tableEnd : u64(at) + (u64(at) >= tableEnd && u64(at) < noteOff ? noteSize : 0)
            for k in 0..<8 { out[at + k] = UInt8(truncatingIfNeeded: off >> (8 * k)) }
        }
        return out
    }

    @Test("sym --core names addresses as sym --pid does (gcore's core and a kernel-style one)")
    func symOnCore() throws {
        let p = try TargetProcess("typed")
        defer { p.release() }
        let dir = try temporaryDirectory("core")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try run("/usr/bin/gcore", ["-o", dir + "/g", String(p.pid)], timeout: 120)
        let gcore = dir + "/g.\(p.pid)"
        try Self.dropReadOnlyFileSegments(gcore, to: dir + "/k")
        // Addresses in every executable mapping: code of the program, libc, ld.so.
        let maps = try ProcFS.maps(pid: p.pid).filter { $0.executable && $0.path.hasPrefix("/") }
        var addrs: [String] = []
        for m in maps { for k in stride(from: UInt64(0), to: m.size, by: Int(max(m.size / 40, 1))) { addrs.append(Self.hex(m.start + k)) } }
        #expect(addrs.count > 100)
        let live = try run(Paths.heapscope, ["sym", "--pid", String(p.pid), "--json"], input: addrs.joined(separator: "\n") + "\n")
        for c in [gcore, dir + "/k"] {
            let fromCore = try run(Paths.heapscope, ["sym", "--core", c, "--json"], input: addrs.joined(separator: "\n") + "\n")
            #expect(live.status == 0 && fromCore.status == 0, "\(fromCore.err)")
            let a = live.out.split(separator: "\n"), b = fromCore.out.split(separator: "\n")
            #expect(a.count == addrs.count && b.count == a.count)
            let named = a.filter { $0.contains("\"symbol\":\"") }.count
            #expect(named > addrs.count * 9 / 10, "\(named) of \(addrs.count) named")
            for (x, y) in zip(a, b) where x != y { Issue.record("sym --core \(c) differs:\n pid:  \(x)\n core: \(y)"); break }
        }
    }

    @Test("bad and cut cores: exit 8 naming what is damaged; a core cut in its memory keeps what it holds and says how much it lacks")
    func badCores() throws {
        let dir = try temporaryDirectory("core")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try TargetProcess("heap_kinds")
        defer { p.release() }
        _ = try run("/usr/bin/gcore", ["-o", dir + "/g", String(p.pid)], timeout: 120)
        let good = try Data(contentsOf: URL(fileURLWithPath: dir + "/g.\(p.pid)"))
        // Cut after the ELF header and in the program headers: not readable as a core.
        for (n, expected) in [(64, "program headers"), (200, "program headers")] {
            let path = dir + "/cut\(n)"
            try good.prefix(n).write(to: URL(fileURLWithPath: path))
            let r = try run(Paths.heapscope, ["stat", path])
            #expect(r.status == 8 && r.err.contains("is damaged") && r.err.contains(expected), "\(n): \(r.status) \(r.err)")
        }
        // gcore writes its notes last: a core cut anywhere in its memory has lost them.
        let half = dir + "/half"
        try good.prefix(good.count / 2).write(to: URL(fileURLWithPath: half))
        let h = try run(Paths.heapscope, ["stat", half])
        #expect(h.status == 8 && h.err.contains("is damaged: its notes") && h.err.contains("are past the end of the file"), "\(h.status) \(h.err)")
        // The kernel writes them first. Such a core cut at the main thread's stack (as a size
        // limit cuts it) still holds the heap: the same chunks, and a warning with exactly the
        // bytes the headers describe but the file lacks.
        let full = dir + "/notes-first", cut = dir + "/cut-at-stack"
        let first = Self.notesFirst([UInt8](good))
        try Data(first).write(to: URL(fileURLWithPath: full))
        let c = try CoreFile(path: full)
        let sp = try #require(c.threads.first { $0.tid == p.pid }?.stackPointer)
        let stack = try #require(c.segments.first { $0.vaddr <= sp && sp < $0.end && $0.filesz > 0 })
        try Data(first.prefix(Int(stack.offset))).write(to: URL(fileURLWithPath: cut))
        var missing: UInt64 = 0
        for s in c.segments where s.offset + s.filesz > stack.offset { missing += s.offset + s.filesz - max(s.offset, stack.offset) }
        let fullChunks = try run(Paths.heapscope, ["chunks", full, "--json", "--no-types"]), cutChunks = try run(Paths.heapscope, ["chunks", cut, "--json", "--no-types"])
        let rowsFull = try #require(try jsonObject(fullChunks.out)["chunks"] as? [[String: Any]]), rowsCut = try #require(try jsonObject(cutChunks.out)["chunks"] as? [[String: Any]])
        #expect(fullChunks.status == 0 && cutChunks.status == 0 && rowsFull.count == p.manifest.live.count + rowsFull.filter { $0["state"] as? String != "in_use" && $0["state"] as? String != "mmapped" }.count)
        #expect(rowsFull.map { "\($0["chunk"]!) \($0["size"]!) \($0["state"]!)" } == rowsCut.map { "\($0["chunk"]!) \($0["size"]!) \($0["state"]!)" }, "\(cutChunks.err)")
        let w = try jsonObject(run(Paths.heapscope, ["stat", cut, "--json"]).out)["warnings"] as? [[String: Any]] ?? []
        #expect(w.count == 1 && w[0]["kind"] as? String == "unreadable" && (w[0]["message"] as? String)?.contains("cut short: \(missing) bytes") == true, "\(w)")
        // A core of another machine: told, exit 8.
        var foreign = good
        foreign[18] = 183; foreign[19] = 0   // EM_AARCH64
        let fpath = dir + "/foreign"
        try foreign.write(to: URL(fileURLWithPath: fpath))
        let f = try run(Paths.heapscope, ["leaks", fpath])
        #expect(f.status == 8 && f.err.contains("not x86-64"), "\(f.status) \(f.err)")
    }
}
