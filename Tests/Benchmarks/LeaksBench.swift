// `heapscope leaks` on the big heap: total time, bytes scanned per second, peak RSS; and, for
// scale, Valgrind's own leak check (vgdb leak_check) of the same program's heap under memcheck.
import Glibc
import ProcessAccess

func jsonNumber(_ json: String, _ key: String) -> Double? {
    guard let r = json.firstRange(of: "\"\(key)\":") else { return nil }
    return Double(json[r.upperBound...].prefix { $0.isNumber })
}

@MainActor func leaksBenchmark(pid: Int32, statWall: Double, valgrindScenario: Scenario?) throws {
    let heapscope = root + "/.build/release/heapscope"
    var walls: [Double] = [], rates: [Double] = [], rss: [Double] = [], pauses: [Double] = []
    for _ in 0..<runs {
        guard let r = try runTool(heapscope, ["leaks", String(pid), "--json"], input: "/dev/null") else {
            print("  heapscope leaks failed"); return
        }
        walls.append(r.wall); rss.append(r.rssMiB)
        rates.append((jsonNumber(r.output, "scanned_bytes") ?? 0) / r.wall / 1048576)
        pauses.append((jsonNumber(r.output, "pause_us") ?? 0) / 1000)
    }
    print("  heapscope leaks total       \(fmt(median(walls), 2)) s   (stat + leaks: \(fmt(statWall + median(walls), 2)) s; aim <= 3 s for 10M chunks)")
    print("  leaks pause                 \(fmt(median(pauses))) ms   (heap and every other writable mapping)")
    print("  scanned per second          \(fmt(median(rates), 0)) MiB/s of roots and chunks (over the whole run)")
    print("  peak RSS of heapscope leaks \(fmt(median(rss), 0)) MiB")
    guard let sc = valgrindScenario, access("/usr/bin/valgrind", X_OK) == 0 else { return }
    // The same program under memcheck: start it, wait for its manifest, time vgdb leak_check.
    let manifest = "/tmp/heapscope-bench-vg-\(getpid()).manifest"
    unlink(manifest)
    let t0 = now()
    let target = try Spawned.start("/usr/bin/valgrind", ["--vgdb=yes", "--leak-check-heuristics=none", bigheap, manifest,
                                                        String(sc.threads), String(sc.perThread), String(sc.request)])
    while !readFile(manifest).hasSuffix("end\n") {
        if now() - t0 > 1200 { print("  valgrind: target did not get ready in 20 min"); target.closeStdin(); return }
        usleep(100_000)
    }
    let ready = now() - t0
    let s = now()
    let vg = try runTool("/usr/bin/vgdb", ["--pid=\(target.pid)", "leak_check", "summary"], input: "/dev/null")
    let vgWall = now() - s
    print("  valgrind leak_check         \(fmt(vgWall, 2)) s for the same heap under memcheck (\(vg == nil ? "failed" : "ok"); "
          + "the program took \(fmt(ready, 0)) s to build it there) = \(fmt(vgWall / median(walls), 1))x heapscope leaks")
    target.closeStdin()
    _ = target.wait(timeoutSeconds: 300)
    unlink(manifest)
}

/// `heapscope snapshot` of the big heap: file size per chunk, time to write it and to read it
/// back (`stat FILE`), against writing and reading the same number of bytes raw in the same run;
/// `diff` of the file with itself and its pprof export.
@MainActor func snapshotBenchmark(pid: Int32) throws {
    let dir = "/tmp/heapscope-bench-snap-\(getpid())"
    mkdir(dir, 0o700)
    defer { _ = try? runTool("/bin/rm", ["-rf", dir], input: "/dev/null") }
    let file = dir + "/a.snap"
    var writes: [Double] = [], inspects: [Double] = [], reads: [Double] = [], diffs: [Double] = [], rawW: [Double] = [], rawR: [Double] = []
    var size = 0, chunks = 0.0
    for _ in 0..<runs {
        guard let r = try runTool(heapscope, ["snapshot", String(pid), "-o", file, "--json"], input: "/dev/null") else {
            print("  heapscope snapshot failed"); return
        }
        writes.append((jsonNumber(r.output, "write_us") ?? 0) / 1e6)
        inspects.append((jsonNumber(r.output, "inspect_us") ?? 0) / 1e6)
        size = Int(jsonNumber(r.output, "bytes") ?? 0); chunks = jsonNumber(r.output, "chunks") ?? 0
        // Raw: the same number of bytes written (write + fsync) and read back.
        let raw = dir + "/raw", buf = [UInt8](repeating: 0x5a, count: size)
        var t = now()
        let fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        buf.withUnsafeBytes { p in var off = 0; while off < size { let n = write(fd, p.baseAddress! + off, size - off); if n <= 0 { break }; off += n } }
        fsync(fd); close(fd)
        rawW.append(now() - t)
        t = now()
        var back = [UInt8](repeating: 0, count: size)
        let rfd = open(raw, O_RDONLY)
        back.withUnsafeMutableBytes { p in var off = 0; while off < size { let n = read(rfd, p.baseAddress! + off, size - off); if n <= 0 { break }; off += n } }
        close(rfd)
        rawR.append(now() - t)
        guard let s = try runTool(heapscope, ["stat", file, "--json"], input: "/dev/null") else { print("  stat FILE failed"); return }
        reads.append(s.wall)
        guard let d = try runTool(heapscope, ["diff", file, file, "--json", "--pprof", dir + "/d.pb.gz"], input: "/dev/null") else {
            print("  diff failed"); return
        }
        diffs.append(d.wall)
    }
    print("  snapshot file               \(fmt(Double(size) / 1048576, 1)) MiB = \(fmt(Double(size) / max(chunks, 1), 1)) bytes per chunk (aim <= 16)")
    print("  snapshot written in         \(fmt(median(writes), 2)) s   (raw write + fsync of as many bytes: \(fmt(median(rawW), 2)) s = \(fmt(median(writes) / max(median(rawW), 1e-6), 1))x; aim <= 1 s)")
    print("  snapshot inspection         \(fmt(median(inspects), 2)) s   (leaks and types of every chunk, while detached but for the pause)")
    print("  stat FILE total             \(fmt(median(reads), 2)) s   (raw read of as many bytes: \(fmt(median(rawR), 3)) s; aim <= 1 s)")
    print("  diff FILE FILE --pprof      \(fmt(median(diffs), 2)) s")
}

/// Every command that inspects the live heap, as a user runs it: wall time, pause, peak RSS less
/// the bytes it copied, per chunk (aim: at most 32), and the time spent faulting in the copy
/// buffers before the stop (stat reports it).
@MainActor func commandsBenchmark(pid: Int32, chunks: Int) throws {
    let dir = "/tmp/heapscope-bench-cmd-\(getpid())"
    mkdir(dir, 0o700)
    defer { _ = try? runTool("/bin/rm", ["-rf", dir], input: "/dev/null") }
    let (statRanges, allRanges) = try plannedRanges(pid: pid)
    let rawStat = try rawCopy(pid: pid, statRanges), rawAll = try rawCopy(pid: pid, allRanges)
    print("  raw copy of what stat copies \(fmt(rawStat * 1000)) ms, of what the others copy \(fmt(rawAll * 1000)) ms")
    print("  command     wall s   pause ms   pause/raw (aim <= 1.3)   peak RSS MiB   copied MiB   (RSS - copied) per chunk (aim <= 32 B)")
    var walls: [String: Double] = [:], runWalls: [String: [Double]] = [:]
    var faults: [Double] = []
    for cmd in ["stat", "leaks", "types", "snapshot"] {
        var w: [Double] = [], p: [Double] = [], rss: [Double] = [], copied: [Double] = []
        for _ in 0..<runs {
            let args = cmd == "snapshot" ? ["snapshot", String(pid), "-o", dir + "/s.snap", "--json"] : [cmd, String(pid), "--json"]
            guard let r = try runTool(heapscope, args, input: "/dev/null") else { print("  \(cmd) failed"); return }
            w.append(r.wall); rss.append(r.rssMiB)
            p.append((jsonNumber(r.output, "pause_us") ?? 0) / 1000)
            copied.append((jsonNumber(r.output, "copied_bytes") ?? 0) / 1048576)
            if cmd == "stat" { faults.append((jsonNumber(r.output, "buffer_fault_us") ?? 0) / 1000) }
        }
        walls[cmd] = median(w); runWalls[cmd] = w
        let perChunk = (median(rss) - median(copied)) * 1048576 / Double(max(chunks, 1))
        let ratio = median(p) / 1000 / max(cmd == "stat" ? rawStat : rawAll, 1e-6)
        print("  \(cmd.padding(10)) \(fmt(median(w), 2).padding(7, left: true)) \(fmt(median(p)).padding(10, left: true))"
              + " \((fmt(ratio, 2) + "x").padding(24, left: true)) \(fmt(median(rss), 0).padding(14, left: true)) \(fmt(median(copied), 0).padding(12, left: true))   \(fmt(perChunk, 1)) B")
    }
    let sorted = faults.sorted()
    print("  copy buffers faulted in before the stop (stat): \(fmt(sorted.first ?? 0, 0))-\(fmt(sorted.last ?? 0, 0)) ms over \(runs) runs")
    // Steadiness: each run's stat + leaks (run i of each), the slowest and fastest.
    let pairs = zip(runWalls["stat"] ?? [], runWalls["leaks"] ?? []).map { $0 + $1 }.sorted()
    print("  stat + leaks \(fmt((walls["stat"] ?? 0) + (walls["leaks"] ?? 0), 2)) s (aim <= 3 s for 10M chunks;"
          + " \(fmt(pairs.first ?? 0, 2))-\(fmt(pairs.last ?? 0, 2)) s over \(pairs.count) runs);"
          + " snapshot / leaks \(fmt((walls["snapshot"] ?? 0) / max(walls["leaks"] ?? 1, 1e-6), 2))x (aim <= 2)")
}
