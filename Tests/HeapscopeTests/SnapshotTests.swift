import Foundation
import Glibc
import GlibcMalloc
import HeapModel
import Inspect
import Snapshot
import Testing

/// Snapshot files: written 0600, read back field for field, the commands that take a file give
/// what the snapshot recorded, bad files give exact errors (exit 8), diff counts exactly.
@Suite("Snapshots", .serialized, .timeLimit(.minutes(3)))
struct SnapshotTests {
    @Test("a file of format 1 (before the allocator's kinds were recorded) reads as glibc's kinds, trimmable bytes recomputed")
    func formatOne() throws {
        let p = try TargetProcess("heap_kinds")
        defer { p.release() }
        let s = try Inspector.snapshot(pid: p.pid)
        let v2 = SnapshotFile.encode(s)
        // The same file as format 1 wrote it: no kinds section, version 1, the table re-sealed.
        func u32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) } }
        func u64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) } }
        func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
        var sections: [(UInt32, [UInt8])] = []
        for k in 0..<Int(u32(v2, 12)) {
            let e = 32 + 32 * k, id = u32(v2, e), o = Int(u64(v2, e + 8)), n = Int(u64(v2, e + 16))
            if id != 12 { sections.append((id, Array(v2[o..<o + n]))) }
        }
        #expect(sections.count == Int(u32(v2, 12)) - 1, "no kinds section in a format 2 file")
        var table: [UInt8] = [], offset = UInt64(32 + 32 * sections.count)
        for (id, bytes) in sections {
            table += le(UInt64(id), 4) + le(0, 4) + le(offset, 8) + le(UInt64(bytes.count), 8) + le(SnapshotFile.checksum(bytes[...]), 8)
            offset += UInt64(bytes.count)
        }
        let v1 = Array(v2[0..<8]) + le(1, 4) + le(UInt64(sections.count), 4) + le(offset, 8) + le(SnapshotFile.checksum(table[...]), 8)
            + table + sections.flatMap(\.1)
        let r = try SnapshotFile.decode(v1, path: "format-1")
        let a = s.report.chunks, b = r.report.chunks
        #expect(b.kinds == GlibcKinds.table() && a.kind == b.kind && a.address == b.address && b.count > 10)
        #expect((0..<b.count).map(b.kindName) == (0..<a.count).map(a.kindName))
        #expect(r.report.heap.trimmableBytes == s.report.heap.trimmableBytes && s.report.heap.trimmableBytes > 0)
        #expect(r.report.arenas.map(\.byKind) == s.report.arenas.map(\.byKind))
        // And format 2 records them: another allocator's names would read back as written.
        var renamed = s
        var k = s.report.chunks.kinds
        k.allocator = "other"; k.kinds[1].name = "percpu"
        let t = s.report.chunks
        renamed.report.heap.chunks = ChunkTable(address: Array(t.address), size: Array(t.size), kind: t.kind, arena: Array(t.arena), kinds: k)
        let back = try SnapshotFile.decode(SnapshotFile.encode(renamed), path: "renamed")
        #expect(back.report.chunks.kinds == k && back.report.chunks.kinds.allocator == "other")
    }

    @Test("round trip: every field back as written; mode 0600; stat, chunks and types read the file")
    func roundTrip() throws {
        let p = try TargetProcess("typed")
        defer { p.release() }
        let dir = try temporaryDirectory("snap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try Inspector.snapshot(pid: p.pid, contents: true)
        let path = dir + "/a.snap"
        try SnapshotFile.write(s, to: path)
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
        let r = try SnapshotFile.read(path)
        let a = s.report.chunks, b = r.report.chunks
        #expect(a.address == b.address && a.size == b.size && a.kind == b.kind && a.kinds == b.kinds && a.arena == b.arena)
        #expect(r.report.mallinfo2 == s.report.mallinfo2 && r.report.pid == p.pid && r.report.arenas.count == s.report.arenas.count)
        #expect(r.report.arenas.map(\.byKind) == s.report.arenas.map(\.byKind) && r.report.threads.map(\.tid) == s.report.threads.map(\.tid))
        #expect(r.leakClass == s.leakClass && r.type == s.type && r.count == s.count && r.confidence == s.confidence)
        #expect(r.ambiguous == s.ambiguous && r.owner == s.owner && r.owners == s.owners && r.types.map(\.name) == s.types.map(\.name))
        #expect(r.contents == s.contents && r.value("exe")?.hasSuffix("/typed") == true && r.parent == s.parent && r.parent.contains { $0 >= 0 })
        #expect(r.report.heap.exitedThreads == s.report.heap.exitedThreads && r.report.heap.exitedThreads != nil)
        // Build-ids: one per file mapped from offset 0, as readelf -n reads it from that file.
        var expected: [String: String] = [:]
        for path in Set(try mappedFiles(p.pid)) {
            let notes = try run("/usr/bin/readelf", ["-n", path]).out
            if let id = notes.split(separator: "\n").first(where: { $0.contains("Build ID:") })?.split(separator: " ").last { expected[path] = String(id) }
        }
        var recorded: [String: String] = [:]
        for (k, v) in r.meta where k.hasPrefix("build_id:") { recorded[String(k.dropFirst(9))] = v }
        #expect(recorded == expected && expected.keys.contains { $0.hasSuffix("/typed") } && expected.count >= 4, "\(recorded)")
        // The manifest's chunks, their contents and labels.
        let t = TypeInspection(snapshot: r)
        let notes = TypeNotes(p.manifestText)
        var offset = 0
        for k in 0..<t.blocks.count {
            let size = Int(t.blocks.end[k] - t.blocks.start[k])
            defer { offset += size }
            guard let n = notes.type[t.blocks.start[k]] else { continue }
            #expect(t.noted(k) == "\(n.name) (\(n.confidence))")
            // Strings hold what the program wrote: "node-N", "keyN" or "local key".
            if n.name == "char[]" {
                let text = String(decoding: r.contents![offset..<offset + size].prefix { $0 != 0 }, as: UTF8.self)
                #expect(text.hasPrefix("node-") || text.hasPrefix("key") || text == "local key", "\(text)")
            }
        }
        // Commands on the file.
        let chunks = try jsonObject(run(Paths.heapscope, ["chunks", path, "--json"]).out)
        let rows = try #require(chunks["chunks"] as? [[String: Any]])
        #expect(rows.count == b.count && rows.map { $0["size"] as? Int ?? 0 } == b.size.map { Int($0) })
        let types = try jsonObject(run(Paths.heapscope, ["types", path, "--json"]).out)
        let live = try jsonObject(run(Paths.heapscope, ["types", String(p.pid), "--json"]).out)
        func counts(_ j: [String: Any]) -> [String: Int] {
            var c: [String: Int] = [:]
            for row in j["types"] as? [[String: Any]] ?? [] { c["\(row["type"]!) \(row["confidence"]!)"] = row["chunks"] as? Int }
            return c
        }
        #expect(counts(types) == counts(live) && !counts(types).isEmpty)
        let stat = try run(Paths.heapscope, ["stat", path, "--json"])
        let statJSON = try jsonObject(stat.out)
        #expect(stat.status == 0 && statJSON["pid"] as? Int == Int(p.pid))
        // leaks, why and show on the file say what they say on the process (same heap: the program waits).
        let leaksFile = try jsonObject(run(Paths.heapscope, ["leaks", path, "--json"]).out)
        let leaksLive = try jsonObject(run(Paths.heapscope, ["leaks", String(p.pid), "--json"]).out)
        for key in ["definitely_lost", "indirectly_lost", "possibly_lost", "still_reachable", "roots", "scanned_bytes"] { #expect(leaksFile[key] as? NSObject == leaksLive[key] as? NSObject && leaksFile[key] != nil, "\(key)") }
        func groupKeys(_ j: [String: Any]) -> [String] {
            (j["groups"] as? [[String: Any]] ?? []).map { "\($0["class"]!) \($0["usable"]!) \($0["chunks"]!) \($0["type"] ?? "-")" }
        }
        #expect(groupKeys(leaksFile) == groupKeys(leaksLive) && !groupKeys(leaksFile).isEmpty)
        for (addr, root) in notes.owner {
            let w = try jsonObject(run(Paths.heapscope, ["why", path, String(addr, radix: 16), "--json"]).out)
            let chain = try #require(w["chain"] as? [[String: Any]], "\(root)")
            #expect(chain.first?["description"] as? String == root && w["class"] as? String == "still_reachable")
        }
        let someAddr = try #require(notes.owner.keys.first)
        let showFile = try jsonObject(run(Paths.heapscope, ["show", path, String(someAddr, radix: 16), "--json"]).out)
        let showLive = try jsonObject(run(Paths.heapscope, ["show", String(p.pid), String(someAddr, radix: 16), "--json"]).out)
        func words(_ j: [String: Any]) -> [String] { (j["words"] as? [[String: Any]] ?? []).map { "\($0["offset"]!) \($0["value"]!)" } }
        #expect(words(showFile) == words(showLive) && !words(showFile).isEmpty && showFile["type"] as? String == showLive["type"] as? String)
        let noContents = dir + "/plain.snap"
        #expect(try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", noContents]).status == 0)
        let show = try run(Paths.heapscope, ["show", noContents, String(someAddr, radix: 16)])
        #expect(show.status == 1 && show.err == "heapscope: \(noContents) holds no chunk contents (take it with heapscope snapshot --contents)\n")
    }

    @Test("truncated, corrupted, foreign and newer files: exit 8 and a message naming the problem")
    func badFiles() throws {
        let p = try TargetProcess("types")
        defer { p.release() }
        let dir = try temporaryDirectory("snap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = dir + "/good.snap"
        let w = try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", good])
        #expect(w.status == 0 && w.out.hasPrefix("wrote \(good): "), "\(w)")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: good)))
        func check(_ name: String, _ b: [UInt8], _ message: String) throws {
            let path = dir + "/" + name
            try Data(b).write(to: URL(fileURLWithPath: path))
            let r = try run(Paths.heapscope, ["stat", path])
            #expect(r.status == 8 && r.err == "heapscope: \(path) \(message)\n", "\(name): \(r.err)")
        }
        try check("truncated", Array(bytes.dropLast(10)), "is truncated: \(bytes.count - 10) bytes, the header says \(bytes.count)")
        try check("short", Array(bytes.prefix(20)), "is truncated: 20 bytes, the header says 32")
        try check("foreign", Array("pid 1\nglibc 2.36\n".utf8), "is not a heapscope snapshot (no HSNAP magic)")
        var newer = bytes; newer[8] = UInt8(SnapshotFile.version + 1)
        try check("newer", newer, "is snapshot format version \(SnapshotFile.version + 1); this heapscope reads version \(SnapshotFile.version) and older")
        var table = bytes; table[40] ^= 0x40
        try check("table", table, "is corrupted: section table checksum mismatch")
        // Flip one byte in every section in turn: each is named.
        let count = Int(bytes[12])
        for k in 0..<count {
            let e = 32 + 32 * k
            let off = (0..<8).reduce(0) { $0 | Int(bytes[e + 8 + $1]) << (8 * $1) }, len = (0..<8).reduce(0) { $0 | Int(bytes[e + 16 + $1]) << (8 * $1) }
            guard len > 0 else { continue }
            var flipped = bytes; flipped[off + len / 2] ^= 0x01
            let names = ["", "meta", "strings", "report", "arenas", "threads", "warnings", "chunks", "labels", "contents", "exitedThreads", "parents", "kinds"]
            try check("flip\(k)", flipped, "is corrupted: section \(names[Int(bytes[e])]) checksum mismatch")
        }
        // Crafted files whose checksums hold (what the fuzz harness found crashing the reader):
        // each is refused with exit 8 naming the impossible value, never a trap.
        let good0 = try SnapshotFile.decode(bytes, path: good)
        func crafted(_ name: String, _ says: String, _ change: (inout Snapshot) -> Void) throws {
            var s = good0
            change(&s)
            let path = dir + "/" + name
            try Data(SnapshotFile.encode(s)).write(to: URL(fileURLWithPath: path))
            for command in ["stat", "types", "leaks"] {
                let r = try run(Paths.heapscope, [command, path])
                #expect(r.status == 8 && r.err.contains("is corrupted: impossible value: \(says)"), "\(name) \(command): \(r.status) \(r.err)")
            }
        }
        try crafted("attempts", "count 4611686018427387904") { $0.report.attempts = 1 << 62 }
        try crafted("copied", "count 9223372036854775807") { $0.report.copiedBytes = .max }
        try crafted("mmapped", "count 9223372036854775807") { $0.report.heap.mmapped = Tally(count: .max, bytes: 0) }
        try crafted("tally", "quantity 18446744073709551615") { $0.report.heap.mmapped = Tally(count: 1, bytes: .max) }
        try crafted("exited", "quantity 9223372036854775808") { s in
            s.report.heap.exitedThreads = [ExitedThread(descriptor: 0x10000, start: 0x10000, end: 0x10000 + (1 << 63), state: .unjoined, heapBlock: 0)]
        }
        try crafted("cycle", "parents of chunk") { s in
            let outstanding = (0..<s.parent.count).filter { s.report.chunks.isOutstanding($0) }
            s.parent[outstanding[0]] = Int32(outstanding[1]); s.parent[outstanding[1]] = Int32(outstanding[0])
        }
        try crafted("address", "chunk") { s in
            let t = s.report.chunks
            s.report.heap.chunks = ChunkTable(address: Array(t.address.dropLast()) + [UInt64.max - 0x1000], size: Array(t.size), kind: t.kind, arena: Array(t.arena),
                                              kinds: t.kinds)
        }
        try crafted("offset", "chunk header sizes") { s in
            let t = s.report.chunks
            var k = t.kinds
            k.userOffset = .max
            s.report.heap.chunks = ChunkTable(address: Array(t.address), size: Array(t.size), kind: t.kind, arena: Array(t.arena), kinds: k)
        }
        // Not a regular file: refused at once, never waited on.
        let fifo = dir + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        for command in ["stat", "diff"] {
            let r = try run(Paths.heapscope, command == "diff" ? ["diff", "--json", fifo, good] : [command, "--json", fifo], timeout: 10)
            #expect(r.status == 8 && r.err.contains("is not a heapscope snapshot"), "\(command) on a FIFO: \(r.status) \(r.err)")
            #expect((try jsonObject(r.out)["error"] as? [String: Any])?["code"] as? Int == 8, "\(command) --json: \(r.out)")
        }
        for command in ["sym", "gensyms"] {
            let r = try run(Paths.heapscope, [command, "--elf", fifo] + (command == "sym" ? ["0x1"] : []), timeout: 10)
            #expect(r.status == 1 && r.err.contains("is not a regular file"), "\(command) --elf on a FIFO: \(r.status) \(r.err)")
        }
        let missing = try run(Paths.heapscope, ["types", dir + "/none.snap"])
        #expect(missing.status == 8 && missing.err.contains("cannot open \(dir)/none.snap: No such file or directory"))
    }

    @Test("diff: a snapshot against itself changes nothing; two programs differ by every chunk, per type exactly")
    func diff() throws {
        let p1 = try TargetProcess("typed"), p2 = try TargetProcess("types")
        defer { p1.release(); p2.release() }
        let dir = try temporaryDirectory("snap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = dir + "/a.snap", b = dir + "/b.snap"
        #expect(try run(Paths.heapscope, ["snapshot", String(p1.pid), "-o", a, "--contents"]).status == 0)
        #expect(try run(Paths.heapscope, ["snapshot", String(p2.pid), "-o", b]).status == 0)
        let sa = try SnapshotFile.read(a), sb = try SnapshotFile.read(b)
        let na = (0..<sa.report.chunks.count).filter(sa.report.chunks.isOutstanding).count
        let nb = (0..<sb.report.chunks.count).filter(sb.report.chunks.isOutstanding).count
        let same = try jsonObject(run(Paths.heapscope, ["diff", a, a, "--json"]).out)
        #expect((same["survivors"] as? [String: Any])?["chunks"] as? Int == na && same["changed"] as? Int == 0)
        #expect((same["new"] as? [String: Any])?["chunks"] as? Int == 0 && (same["groups"] as? [[String: Any]])?.allSatisfy { $0["change_bytes"] as? Int == 0 } == true)
        let d = try jsonObject(run(Paths.heapscope, ["diff", a, b, "--json", "--limit", "1000"]).out)
        #expect((d["new"] as? [String: Any])?["chunks"] as? Int == nb && (d["gone"] as? [String: Any])?["chunks"] as? Int == na)
        #expect(d["changed"] is NSNull)
        // Per type: B's count less A's, as each snapshot's own labels say.
        func perType(_ s: Snapshot) -> [String: Int] {
            let g = TypeInspection(snapshot: s).groups()
            var c: [String: Int] = [:]
            for id in g.of { c[g.key(id), default: 0] += 1 }
            return c
        }
        let ca = perType(sa), cb = perType(sb)
        for g in try #require(d["groups"] as? [[String: Any]]) {
            let key = g["key"] as! String
            #expect(g["change_chunks"] as? Int == (cb[key] ?? 0) - (ca[key] ?? 0), "\(key)")
        }
        #expect((d["groups"] as? [[String: Any]])?.count == Set(ca.keys).union(cb.keys).count)
    }
}

/// Files the process maps from offset 0 (its executable and libraries), from /proc/PID/maps.
func mappedFiles(_ pid: Int32) throws -> [String] {
    try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8).split(separator: "\n").compactMap { line in
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        return f.count >= 6 && f[2] == "00000000" && f[5].hasPrefix("/") ? String(f[5]) : nil
    }
}

/// What TestTargets/phases.c says after a phase.
struct PhaseNotes {
    var records: [UInt64: UInt64] = [:], leaks: [UInt64: UInt64] = [:], dtv: [UInt64: UInt64] = [:]
    var exited: [(descriptor: UInt64, start: UInt64, end: UInt64)] = []
    init(_ text: String) {
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            func h(_ i: Int) -> UInt64 { UInt64(f[i], radix: 16)! }
            switch f.first {
            case "record": records[h(1)] = UInt64(f[2])!
            case "leak": leaks[h(1)] = UInt64(f[2])!
            case "dtv": dtv[h(1)] = UInt64(f[2])!
            case "exited": exited.append((h(1), h(2), h(3)))
            default: break
            }
        }
    }
    static func sum(_ d: [UInt64: UInt64]) -> Int { Int(d.values.reduce(0, +)) }
    /// Usable bytes (what type groups count): chunk size less the 8-byte header.
    static func usable(_ d: [UInt64: UInt64]) -> Int { Int(d.values.reduce(0) { $0 + $1 - 8 }) }
}

extension SnapshotTests {
    @Test("phases: diffs after each phase give exact counts and bytes per type and per cause, unjoined threads included")
    func phases() throws {
        let p = try TargetProcess("phases")
        defer { p.release() }
        let dir = try temporaryDirectory("snap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var notes: [PhaseNotes] = []
        for phase in 1...3 {
            if phase > 1 { try p.signal(SIGUSR1, thenWaitFor: "phase \(phase)") }
            notes.append(PhaseNotes(p.manifestText))
            let r = try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", "\(dir)/\(phase).snap"])
            #expect(r.status == 0, "\(r)")
        }
        let (n1, n2, n3) = (notes[0], notes[1], notes[2])
        #expect(n2.records.count == n1.records.count + 40 && n2.leaks.count == 5 && n3.records.count == 25 && n3.exited.count == 3)
        func diff(_ a: Int, _ b: Int, by: String = "type") throws -> (groups: [String: (chunks: Int, bytes: Int)], causes: [String: Int], json: [String: Any]) {
            let j = try jsonObject(run(Paths.heapscope, ["diff", "\(dir)/\(a).snap", "\(dir)/\(b).snap", "--json", "--limit", "1000", "--by", by]).out)
            var g: [String: (Int, Int)] = [:], c: [String: Int] = [:]
            for row in j["groups"] as? [[String: Any]] ?? [] { g[row["key"] as! String] = (row["change_chunks"] as! Int, row["change_bytes"] as! Int) }
            for row in j["causes"] as? [[String: Any]] ?? [] { c[row["id"] as! String] = row["change"] as? Int }
            return (g, c, j)
        }
        // Phase 2: +40 records, 5 leaked chunks (no pointer kept: lost, untyped); nothing else changes.
        let d12 = try diff(1, 2)
        #expect(d12.groups["struct record"]! == (40, PhaseNotes.usable(n2.records) - PhaseNotes.usable(n1.records)))
        #expect(d12.groups["(unknown)"]! == (5, PhaseNotes.usable(n2.leaks)))
        for (k, v) in d12.groups where k != "struct record" && k != "(unknown)" { #expect(v == (0, 0), "\(k)") }
        #expect(d12.causes["in_use_reachable"] == PhaseNotes.sum(n2.records) - PhaseNotes.sum(n1.records))
        #expect(d12.causes["in_use_lost"] == PhaseNotes.sum(n2.leaks) && d12.causes["in_use_possibly_lost"] == 0)
        #expect(d12.causes["unjoined_threads"] == 0 && d12.causes["unjoined_stacks"] == 0 && d12.causes["mmapped"] == 0 && d12.causes["arenas"] == 0)
        #expect((d12.json["new"] as? [String: Any])?["chunks"] as? Int == 45 && (d12.json["gone"] as? [String: Any])?["chunks"] as? Int == 0)
        // The same growth by size, owner and state.
        func changed(_ g: [String: (chunks: Int, bytes: Int)]) -> [String: Int] { g.filter { $0.value.chunks != 0 }.mapValues(\.chunks) }
        let recordSize = String(n2.records.values.first! - 8), leakSize = String(n2.leaks.values.first! - 8)
        #expect(changed(try diff(1, 2, by: "size").groups) == [recordSize: 40, leakSize: 5])
        #expect(changed(try diff(1, 2, by: "state").groups) == ["in_use": 45])
        let byOwner = changed(try diff(1, 2, by: "owner").groups)
        #expect(byOwner.count == 2 && byOwner["(no owner)"] == 5 && byOwner.contains { $0.key.hasPrefix("records (phases.c:") && $0.value == 40 }, "\(byOwner)")
        // Phase 3: 15 records freed (kept by malloc in tcache and fastbins); 3 threads exited
        // unjoined: their stacks stay mapped and their dtv blocks stay allocated.
        let d23 = try diff(2, 3)
        let freed = PhaseNotes.sum(n2.records) - PhaseNotes.sum(n3.records)
        #expect(d23.groups["struct record"]! == (-15, PhaseNotes.usable(n3.records) - PhaseNotes.usable(n2.records)))
        #expect(d23.groups["(unknown)"]! == (3, PhaseNotes.usable(n3.dtv)))
        for (k, v) in d23.groups where k != "struct record" && k != "(unknown)" { #expect(v == (0, 0), "\(k)") }
        #expect(d23.causes["in_use_reachable"] == -freed && d23.causes["in_use_lost"] == 0)
        #expect(d23.causes["free_bins"]! + d23.causes["free_top"]! == freed - PhaseNotes.sum(n3.dtv))
        #expect(d23.causes["unjoined_threads"] == 3 && d23.causes["unjoined_heap"] == PhaseNotes.sum(n3.dtv))
        #expect(d23.causes["unjoined_stacks"] == n3.exited.reduce(0) { $0 + Int($1.end - $1.start) })
        #expect(d23.causes["threads"] == 0 && d23.causes["arenas"] == 0 && d23.causes["cached_stacks"] == 0)
        // The snapshot names each stack as /proc/self/maps showed it to the program.
        let s3 = try SnapshotFile.read("\(dir)/3.snap")
        let ex = try #require(s3.report.heap.exitedThreads)
        #expect(ex.map { "\($0.descriptor) \($0.start) \($0.end) \($0.state)" }.sorted()
                == n3.exited.map { "\($0.descriptor) \($0.start) \($0.end) unjoined" }.sorted())
        let stat = try jsonObject(run(Paths.heapscope, ["stat", String(p.pid), "--json"]).out)
        let exitedJSON = try #require(stat["exited_threads"] as? [String: Any])
        #expect((exitedJSON["unjoined"] as? [String: Any])?["threads"] as? Int == 3 && (exitedJSON["cached"] as? [String: Any])?["threads"] as? Int == 0)
        #expect((exitedJSON["unjoined"] as? [String: Any])?["bytes"] as? Int == d23.causes["unjoined_stacks"])
        let text = try run(Paths.heapscope, ["diff", "\(dir)/2.snap", "\(dir)/3.snap"]).out
        #expect(text.contains("threads exited, not joined") && text.contains("struct record"), "\(text)")
    }
}

/// A pprof profile as `protoc --decode` prints it (against Tests/pprof/profile.proto): samples as
/// stacks of frame names, leaf first, with their values.
struct DecodedProfile {
    var sampleTypes: [String] = []
    var samples: [(stack: [String], values: [Int])] = []
    var total: [Int] { (0..<sampleTypes.count).map { i in samples.reduce(0) { $0 + $1.values[i] } } }

    init(gzipped path: String) throws {
        let dir = try temporaryDirectory("pprof")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run("/bin/sh", ["-c", "gzip -dc \"$0\" | protoc --decode=perftools.profiles.Profile -I \"$1\" profile.proto",
                                    path, Paths.root + "/Tests/pprof"])
        guard r.status == 0 else { throw HarnessError(description: "protoc: \(r.err)") }
        var strings: [String] = [], types: [Int] = [], fnName: [Int: Int] = [:], locFn: [Int: Int] = [:]
        var raw: [(locs: [Int], values: [Int])] = []
        var block: [String] = [], id = 0, name = 0, fid = 0, locs: [Int] = [], values: [Int] = []
        for line in r.out.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            if line.hasSuffix("{") { block.append(String(line.dropLast(2))); continue }
            if line == "}" {
                switch block.popLast() {
                case "sample": raw.append((locs, values)); locs = []; values = []
                case "function": fnName[id] = name
                case "location": locFn[id] = fid
                default: break
                }
                continue
            }
            let kv = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2 else { continue }
            switch (block.last ?? "", kv[0]) {
            case ("", "string_table"): strings.append(DecodedProfile.unquote(kv[1]))
            case ("sample_type", "type"): types.append(Int(kv[1])!)
            case ("sample", "location_id"): locs.append(Int(kv[1])!)
            case ("sample", "value"): values.append(Int(kv[1])!)
            case ("function", "id"), ("location", "id"): id = Int(kv[1])!
            case ("function", "name"): name = Int(kv[1])!
            case ("line", "function_id"): fid = Int(kv[1])!
            default: break
            }
        }
        sampleTypes = types.map { strings[$0] }
        samples = raw.map { (s: (locs: [Int], values: [Int])) in (s.locs.map { strings[fnName[locFn[$0]!]!] }, s.values) }
    }

    /// A protoc text-format string: quotes, backslash escapes, octal bytes.
    static func unquote(_ s: String) -> String {
        var bytes: [UInt8] = [], i = 0
        let it = Array(s.utf8.dropFirst().dropLast())
        while i < it.count {
            if it[i] == UInt8(ascii: "\\"), i + 1 < it.count {
                let digits = it[(i + 1)..<min(i + 4, it.count)]
                if digits.count == 3, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }),
                   let d = Int(String(decoding: digits, as: UTF8.self), radix: 8) {
                    bytes.append(UInt8(d)); i += 4; continue
                }
                let c = it[i + 1]
                bytes.append(c == UInt8(ascii: "n") ? 10 : c); i += 2; continue
            }
            bytes.append(it[i]); i += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension SnapshotTests {
    @Test("pprof: the profile decodes with protoc; totals equal the snapshot's; stacks run from each noted owner to the type; diff = B - A")
    func pprof() throws {
        let p = try TargetProcess("typed"), q = try TargetProcess("phases")
        defer { p.release(); q.release() }
        let dir = try temporaryDirectory("snap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", dir + "/a.snap", "--pprof", dir + "/a.pb.gz"])
        #expect(r.status == 0, "\(r)")
        var st = stat()
        #expect(stat(dir + "/a.pb.gz", &st) == 0 && st.st_mode & 0o777 == 0o600)
        let s = try SnapshotFile.read(dir + "/a.snap")
        let t = TypeInspection(snapshot: s)
        let usable = (0..<t.blocks.count).reduce(0) { $0 + Int(t.blocks.end[$1] - t.blocks.start[$1]) }
        let prof = try DecodedProfile(gzipped: dir + "/a.pb.gz")
        #expect(prof.sampleTypes == ["inuse_objects", "inuse_space"])
        #expect(prof.total == [t.blocks.count, usable])
        // Every noted owner is the root of a stack whose leaf is the type noted for its chunk.
        let notes = TypeNotes(p.manifestText)
        #expect(!notes.owner.isEmpty)
        for (addr, root) in notes.owner {
            let leaf = notes.type[addr].map { $0.name.hasSuffix("]") ? String($0.name[..<$0.name.lastIndex(of: "[")!]) + "[]" : $0.name }
            #expect(prof.samples.contains { $0.stack.last == root && $0.stack.first == leaf }, "\(root) -> \(leaf ?? "?")")
        }
        // Diff profile of the phases target: B - A per stack; the 40 records under their root.
        #expect(try run(Paths.heapscope, ["snapshot", String(q.pid), "-o", dir + "/1.snap"]).status == 0)
        try q.signal(SIGUSR1, thenWaitFor: "phase 2")
        #expect(try run(Paths.heapscope, ["snapshot", String(q.pid), "-o", dir + "/2.snap"]).status == 0)
        #expect(try run(Paths.heapscope, ["diff", dir + "/1.snap", dir + "/2.snap", "--pprof", dir + "/d.pb.gz"]).status == 0)
        let d = try DecodedProfile(gzipped: dir + "/d.pb.gz")
        let n = PhaseNotes(q.manifestText)
        #expect(d.total == [45, PhaseNotes.usable(n.records) + PhaseNotes.usable(n.leaks)])
        #expect(d.samples.filter { $0.stack.first == "struct record" }.map(\.values) == [[40, PhaseNotes.usable(n.records)]])
        #expect(d.samples.filter { $0.stack.first == "(unknown)" }.map(\.stack) == [["(unknown)", "(definitely lost)"]])
    }
}
