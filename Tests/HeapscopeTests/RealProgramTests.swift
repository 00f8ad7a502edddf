import Foundation
import Glibc
import Inspect
import Snapshot
import Testing

/// Programs nobody here wrote: Debian's python3 and perl, building real heaps (thousands of
/// objects, a third of each batch freed again). `stat` must equal what gdb makes the target's own
/// `mallinfo2()` return; every other command must work on them and agree with `stat`.
@Suite("Real programs: python3 and perl", .serialized, .timeLimit(.minutes(5)))
struct RealProgramTests {
    /// Writes "pid N", "phase K", "end" to the manifest (atomically) after building its heap and
    /// after each SIGUSR1 (which adds to it), and waits for stdin to close.
    static let python = """
    import os, signal, sys
    keep = []
    phase = 0
    def grow(n):
        new = []
        for i in range(n):
            new.append({("k%d" % j): ("v" * 40) + str(j) for j in range(40)})
            new.append([str(i)] * 200)
            new.append(bytearray(600 + i % 300))
        del new[::3]
        keep.extend(new)
    def note():
        global phase
        phase += 1
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write("pid %d\\nphase %d\\nend\\n" % (os.getpid(), phase))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    def on_usr1(sig, frame):
        grow(1000)
        note()
    signal.signal(signal.SIGUSR1, on_usr1)
    grow(3000)
    note()
    sys.stdin.read()
    """
    static let perl = """
    my @keep; my $phase = 0; my $m = shift;
    sub grow { my $n = shift; my @new; for my $i (1..$n) { my %h = map { ("k$_" => ("v" x 40) . $_) } 1..40;
        push @new, \\%h, [ ($i) x 200 ], "x" x (600 + $i % 300); }
        my $j = 0; push @keep, grep { $j++ % 3 } @new; }
    sub note { $phase++; open(my $f, ">", "$m.tmp") or die; print $f "pid $$\\nphase $phase\\nend\\n"; close $f; rename("$m.tmp", $m) or die; }
    $SIG{USR1} = sub { grow(1000); note(); };
    grow(3000); note();
    while (1) { my $r = sysread(STDIN, my $buf, 4096); last if defined $r && $r == 0; }
    """

    static let programs: [(name: String, launcher: [String])] = [
        ("python3", ["/usr/bin/python3", "-c", python]),
        ("perl", ["/usr/bin/perl", "-e", perl]),
    ]

    /// gdb's `p mallinfo2()` in the target: field name -> value.
    func gdbMallinfo2(_ pid: Int32) throws -> [String: UInt64] {
        let r = try run("/usr/bin/gdb", ["-batch", "-nx", "-p", String(pid), "-ex", "p mallinfo2()"], timeout: 120)
        let line = try #require(r.out.split(separator: "\n").first { $0.hasPrefix("$1 = {") }, "gdb printed no mallinfo2: \(r.out) \(r.err)")
        var out: [String: UInt64] = [:]
        for field in line.dropFirst(6).dropLast().components(separatedBy: ", ") {
            let kv = field.components(separatedBy: " = ")
            if kv.count == 2, let v = UInt64(kv[1]) { out[kv[0]] = v }
        }
        try #require(out.count == 10, "gdb: \(line)")
        return out
    }

    func heapscope(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let r = try run(Paths.heapscope, args, timeout: 300)
        #expect(r.status == 0, "heapscope \(args.joined(separator: " ")) exited \(r.status): \(r.err)", sourceLocation: sourceLocation)
        return r.out
    }

    @Test("stat equals gdb's p mallinfo2(), before and after the heap grows", arguments: RealProgramTests.programs.map(\.name))
    func stat(program: String) throws {
        let p = try TargetProcess(program, launcher: RealProgramTests.programs.first { $0.name == program }!.launcher)
        for phase in 1...2 {
            if phase == 2 { try p.signal(SIGUSR1, thenWaitFor: "phase 2") }
            let j = try jsonObject(heapscope(["stat", "--json", String(p.pid)]))
            let ours = try #require(j["mallinfo2"] as? [String: Any])
            let gdb = try gdbMallinfo2(p.pid)
            for (field, value) in gdb {
                #expect((ours[field] as? NSNumber)?.uint64Value == value, "\(program) phase \(phase): mallinfo2.\(field): gdb \(value), heapscope \(ours[field] ?? "none")")
            }
            #expect(gdb["uordblks"]! > 4 << 20, "\(program) built a heap of \(gdb["uordblks"]!) bytes")
            #expect((j["warnings"] as? [Any])?.isEmpty == true, "\(j["warnings"] ?? "")")
        }
        #expect(p.release().ok)
    }

    @Test("chunks, types, leaks, snapshot, diff and show work and agree with each other", arguments: RealProgramTests.programs.map(\.name))
    func commands(program: String) throws {
        let p = try TargetProcess(program, launcher: RealProgramTests.programs.first { $0.name == program }!.launcher)
        defer { p.release() }
        let dir = try temporaryDirectory("real")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pid = String(p.pid)
        let chunks = try #require(try jsonObject(heapscope(["chunks", "--json", "--limit", "10000000", pid]))["chunks"] as? [[String: Any]])
        let outstanding = chunks.filter { ["in_use", "mmapped"].contains($0["state"] as? String ?? "") }
        #expect(outstanding.count > 4000, "\(program): \(outstanding.count) outstanding chunks")
        // leaks classifies every outstanding chunk exactly once.
        let leaks = try jsonObject(heapscope(["leaks", "--json", pid]))
        let classified = ["definitely_lost", "indirectly_lost", "possibly_lost", "still_reachable"]
            .map { ((leaks[$0] as? [String: Any])?["chunks"] as? Int) ?? -1 }
        #expect(classified.reduce(0, +) == outstanding.count, "\(program): leaks \(classified), chunks \(outstanding.count)")
        // Leak groups made in two passes (as for a million chunks, on two threads) are the groups of one.
        let lib = try Inspector.leaks(pid: p.pid, types: true, typesOfReachable: true)
        let blocks = lib.leaks.blocks.count
        LeakTests.expectGroupsInHalves(lib, splits: [0, 1, blocks - 1, blocks] + (1..<24).map { blocks * $0 / 24 }, program)
        // types: every outstanding chunk counted once; for python, PyObject (struct _object) from its DWARF.
        let types = try heapscope(["types", pid])
        #expect(types.contains("declared"), "\(types.prefix(2000))")
        if program == "python3" { #expect(types.contains("struct _object"), "\(types.prefix(2000))") }
        // show on a typed chunk.
        let typed = try #require(chunks.first { $0["type"] is String && $0["state"] as? String == "in_use" }, "\(program): no typed chunk")
        let show = try heapscope(["show", pid, typed["chunk"] as! String])
        #expect(show.contains("type \(typed["type"] as! String)"), "\(show.prefix(500))")
        // Two snapshots around growth, and their diff: the growth is in use, and it is what stat saw.
        _ = try heapscope(["snapshot", pid, "-o", "\(dir)/1.snap"])
        let before = try #require((try jsonObject(heapscope(["stat", "--json", pid]))["mallinfo2"] as? [String: Any])?["uordblks"] as? Int)
        try p.signal(SIGUSR1, thenWaitFor: "phase 2")
        _ = try heapscope(["snapshot", pid, "-o", "\(dir)/2.snap"])
        let after = try #require((try jsonObject(heapscope(["stat", "--json", pid]))["mallinfo2"] as? [String: Any])?["uordblks"] as? Int)
        let diff = try jsonObject(heapscope(["diff", "--json", "--by", "state", "\(dir)/1.snap", "\(dir)/2.snap"]))
        let causes = diff["causes"] as? [[String: Any]] ?? []
        let inUse = causes.filter { ($0["id"] as? String)?.hasPrefix("in_use") == true }.reduce(0) { $0 + ($1["change"] as? Int ?? 0) }
        #expect(inUse > 1 << 20, "\(program): in-use growth \(inUse) (mallinfo2.uordblks \(before) -> \(after)); causes \(causes)")
        let text = try heapscope(["diff", "\(dir)/1.snap", "\(dir)/2.snap"])
        #expect(text.contains("in use"), "\(text.prefix(1000))")
        // A snapshot against itself: every outstanding chunk survives, nothing is new or gone.
        let selfDiff = try jsonObject(heapscope(["diff", "--json", "\(dir)/2.snap", "\(dir)/2.snap"]))
        let table = try SnapshotFile.read("\(dir)/2.snap").report.chunks
        let n = (0..<table.count).filter(table.isOutstanding).count
        #expect((selfDiff["survivors"] as? [String: Any])?["chunks"] as? Int == n && (selfDiff["new"] as? [String: Any])?["chunks"] as? Int == 0
                && (selfDiff["gone"] as? [String: Any])?["chunks"] as? Int == 0, "\(program): self-diff \(selfDiff.filter { $0.key != "groups" })")
    }

    /// A file named like libc mapped as data (below the real one, as mmap places it first when
    /// asked) is not taken for libc: libc is told by its code and its version string.
    @Test("a data file named libc.so.6 mapped besides the real libc")
    func fakeLibc() throws {
        let dir = try temporaryDirectory("fakelibc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(repeating: 0x41, count: 1 << 16).write(to: URL(fileURLWithPath: dir + "/libc.so.6"))
        let script = """
        import mmap, os, sys
        f = open(sys.argv[2], "rb")
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        keep = [bytearray(1000) for _ in range(100)]
        open(sys.argv[1], "w").write("pid %d\\nend\\n" % os.getpid())
        sys.stdin.read()
        """
        let p = try TargetProcess("python3", args: [dir + "/libc.so.6"], launcher: ["/usr/bin/python3", "-c", script])
        let maps = try String(contentsOfFile: "/proc/\(p.pid)/maps", encoding: .utf8)
        #expect(maps.contains(dir + "/libc.so.6"), "the data file is mapped")
        let r = try run(Paths.heapscope, ["stat", "--json", String(p.pid)])
        #expect(r.status == 0, "\(r.err)")
        #expect(try jsonObject(r.out)["glibc_version"] as? String == "2.36")
        #expect(p.release().ok)
    }
}
