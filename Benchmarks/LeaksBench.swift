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
