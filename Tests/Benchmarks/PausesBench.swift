// Pauses of every command that stops the target, against a raw process_vm_readv copy of exactly
// the ranges that command copies (same run, same machine: read the ratios). Targets: what made
// pauses grow before they were bound to resident memory (TestTargets/reserve: untouched
// reservations, shared memory, many mappings, many threads) and a multi-threaded heap
// (TestTargets/bigheap with 7 threads).
import Glibc
import GlibcMalloc
import Inspect
import ProcessAccess

@MainActor func pausesBenchmark(quick: Bool) throws {
    let heapscope = root + "/.build/release/heapscope"
    print("pause benchmark (release build; medians of \(runs) runs): pause / raw copy of the same ranges (aim <= 1.3)")
    let scenarios: [(String, String, [String])] = [
        ("16 GiB untouched reservation + 64 MiB shared", root + "/TestTargets/build/reserve", ["reserve", "16", "shared", "64"]),
        ("60,000 mappings", root + "/TestTargets/build/reserve", ["maps", quick ? "3000" : "30000"]),
        ("10,000 threads", root + "/TestTargets/build/reserve", ["threads", quick ? "1000" : "10000"]),
        ("7 threads x 200k chunks (~100 MB)", bigheap, ["7", quick ? "20000" : "200000", "64"]),
    ]
    for (name, path, args) in scenarios {
        let manifest = "/tmp/heapscope-bench-pauses-\(getpid()).manifest"
        unlink(manifest)
        let t0 = now()
        let target = try Spawned.start(path, [manifest] + args)
        while !readFile(manifest).hasSuffix("end\n") {
            if now() - t0 > 300 { print("target did not get ready"); return }
            usleep(10_000)
        }
        let pid = target.pid
        print("== \(name)")
        // What stat copies (the heap walk) and what leaks copies (that and the rest that must be).
        let (statRanges, allRanges) = try plannedRanges(pid: pid)
        let rawStat = try rawCopy(pid: pid, statRanges), rawAll = try rawCopy(pid: pid, allRanges)
        let mib = { (r: [BulkCopier.Request]) in fmt(Double(r.reduce(0) { $0 + $1.count }) / 1048576) }
        print("  copied: stat \(mib(statRanges)) MiB, leaks/types/snapshot \(mib(allRanges)) MiB; raw copy \(fmt(rawStat * 1000, 2)) / \(fmt(rawAll * 1000, 2)) ms")
        var statPause = 0.0
        for cmd in ["stat", "leaks", "types", "snapshot"] {
            var pauses: [Double] = [], walls: [Double] = [], rss: [Double] = []
            for _ in 0..<runs {
                let extra = cmd == "snapshot" ? ["-o", "/tmp/heapscope-bench-pauses-\(getpid()).snap"] : []
                guard let r = try runTool(heapscope, [cmd, String(pid), "--json", "--max-stop", "60s"] + extra, input: "/dev/null") else {
                    print("  \(cmd) failed"); break
                }
                pauses.append((jsonNumber(r.output, "pause_us") ?? 0) / 1000); walls.append(r.wall); rss.append(r.rssMiB)
            }
            unlink("/tmp/heapscope-bench-pauses-\(getpid()).snap")
            guard !pauses.isEmpty else { continue }
            let p = median(pauses)
            if cmd == "stat" { statPause = p }
            let base: Double = cmd == "stat" ? rawStat : rawAll
            let name = cmd + String(repeating: " ", count: max(0, 9 - cmd.count))
            let ratio: String = fmt(p / 1000 / max(base, 1e-6), 2)
            let vsStat: String = cmd == "stat" ? "" : ", " + fmt(p / max(statPause + (rawAll - rawStat) * 1000, 1e-3), 2) + "x (stat pause + raw copy of the rest)"
            let tail: String = "; total " + fmt(median(walls), 2) + " s, peak RSS " + fmt(median(rss), 0) + " MiB"
            print("  " + name + " pause " + fmt(p, 1) + " ms = " + ratio + "x raw copy" + vsStat + tail)
        }
        target.closeStdin()
        _ = target.wait(timeoutSeconds: 60)
        unlink(manifest)
    }
    print("")
}

/// Median seconds of attaching, copying exactly `ranges` with one process_vm_readv pass into
/// pre-faulted buffers, and detaching: the fastest copy there is (the copy alone is timed).
@MainActor func rawCopy(pid: Int32, _ ranges: [BulkCopier.Request]) throws -> Double {
    let bytes = ranges.reduce(0) { $0 + $1.count }
    var xs: [Double] = []
    for _ in 0..<runs {
        let pool = BufferPool(bytes: bytes + (1 << 20))
        let a = try Attachment(pid: pid, budgetNs: 60_000_000_000)
        let s = now()
        BulkCopier(pid: pid, pool: pool).copy(ranges, into: MemoryImage())
        xs.append(now() - s)
        a.detach()
    }
    return median(xs)
}

/// The ranges `stat` copies (the heap) and those `leaks`, `types` and `snapshot` copy (the heap
/// and every other writable mapping that must be), as heapscope plans them.
@MainActor func plannedRanges(pid: Int32) throws -> (stat: [BulkCopier.Request], all: [BulkCopier.Request]) {
    let prep = try Inspector.prepare(pid: pid, options: InspectOptions())
    let att = try Attachment(pid: pid, budgetNs: 60_000_000_000)
    let cap = prep.newCapture()
    try cap.capture(threads: att.threads, pool: BufferPool(bytes: prep.estimatedCopyBytes), budget: nil, mmappedFrom: LivePages(pid: pid))
    att.detach()
    var o = InspectOptions(); o.maxStopMicroseconds = 60_000_000
    let leaks = try Inspector.leaks(pid: pid, options: o)
    return (cap.image.regions.map { BulkCopier.Request(start: $0.start, count: $0.count, label: "") },
            leaks.memory.regions.map { BulkCopier.Request(start: $0.start, count: $0.count, label: "") })
}
