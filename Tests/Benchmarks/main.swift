// `make bench`: heapscope's pause and total time on big heaps, against a raw process_vm_readv copy
// of the same bytes measured in the same run; `sym` against llvm-symbolizer, eu-addr2line and
// addr2line on the same addresses (machines are noisy: read the ratios).
// Options: --quick (smaller inputs), --only heap|types|sym|pauses.
import Glibc
import GlibcMalloc
import HeapModel
import Inspect
import ProcessAccess

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
func fmt(_ v: Double, _ digits: Int = 1) -> String {
    var p = 1.0; for _ in 0..<digits { p *= 10 }
    let r = (v * p).rounded() / p
    return digits == 0 ? String(Int(r)) : String(r)
}
func readFile(_ path: String) -> String {
    (try? ProcFS.readFile(path)) ?? ""
}

let root = String(cString: getcwd(nil, 0))
let heapscope = root + "/.build/release/heapscope"
let bigheap = root + "/TestTargets/build/bigheap"
let runs = 3

struct Scenario { var name: String; var threads: Int; var perThread: Int; var request: Int }
var scenarios = [
    Scenario(name: "10M chunks of 64 B, main arena", threads: 0, perThread: 10_000_000, request: 64),
    Scenario(name: "8 arenas x 1M chunks of 64 B", threads: 8, perThread: 1_000_000, request: 64),
]
if CommandLine.arguments.contains("--quick") {
    scenarios = scenarios.map { var s = $0; s.perThread /= 10; return s }
}

let only = CommandLine.arguments.firstIndex(of: "--only").map { CommandLine.arguments[$0 + 1] }
if only == nil || only == "heap" { try heapBenchmark() }
if only == nil || only == "types" { try typesBenchmark(quick: CommandLine.arguments.contains("--quick")) }
if only == nil || only == "sym" { try symBenchmark(quick: CommandLine.arguments.contains("--quick")) }
if only == nil || only == "pauses" { try pausesBenchmark(quick: CommandLine.arguments.contains("--quick")) }

@MainActor func heapBenchmark() throws {
print("heapscope benchmark (release build; medians of \(runs) runs; target = TestTargets/bigheap)")
print("")
for sc in scenarios {
    let manifest = "/tmp/heapscope-bench-\(getpid()).manifest"
    unlink(manifest)
    let t0 = now()
    let target = try Spawned.start(bigheap, [manifest, String(sc.threads), String(sc.perThread), String(sc.request)])
    while !readFile(manifest).hasSuffix("end\n") {
        if now() - t0 > 300 { print("target did not get ready"); exit(1) }
        usleep(10_000)
    }
    let pid = target.pid
    let label = sc.threads == 0 ? "\(sc.perThread) chunks of \(sc.request) B requests, main arena"
                                : "\(sc.threads) threads x \(sc.perThread) chunks of \(sc.request) B requests"
    print("== \(label) (target ready in \(fmt(now() - t0)) s)")

    // heapscope stat as a user runs it: wall time, peak RSS, pause reported.
    var walls: [Double] = [], pauses: [Double] = [], rss: [Double] = []
    for _ in 0..<runs {
        let out = "/tmp/heapscope-bench-\(getpid()).json"
        let s = now()
        let child = try Spawned.start(heapscope, ["stat", String(pid), "--json"], stdinPipe: false, stdout: out)
        guard let (st, ru) = child.wait(timeoutSeconds: 300), exitCode(ofWaitStatus: st) == 0 else {
            print("heapscope stat failed"); exit(1)
        }
        walls.append(now() - s)
        _ = ru
        let json = readFile(out)
        if let part = json.split(separator: ",").first(where: { $0.hasPrefix("\"peak_rss_kb\":") }) {
            rss.append((Double(part.dropFirst(14)) ?? 0) / 1024)
        }
        if let part = json.split(separator: ",").first(where: { $0.hasPrefix("\"pause_us\":") }) {
            pauses.append(Double(part.dropFirst(11)) ?? 0)
        }
        unlink(out)
    }

    // The same heap in-process: what is copied and how many chunks.
    let report = try Inspector.inspect(pid: pid)
    let target2 = try Inspector.prepare(pid: pid, options: InspectOptions())
    let att = try Attachment(pid: pid)
    let cap = target2.newCapture()
    try cap.capture(threads: att.threads, pool: BufferPool(bytes: target2.estimatedCopyBytes), budget: nil, mmappedFrom: LivePages(pid: pid))
    att.detach()
    let ranges = cap.image.regions.map { BulkCopier.Request(start: $0.start, count: $0.count, label: $0.label) }
    let bytes = ranges.reduce(0) { $0 + $1.count }

    // Baseline: attach, one raw process_vm_readv copy of exactly those bytes, detach.
    // Same pre-faulted destination buffers as heapscope uses: the fastest raw copy there is.
    var raws: [Double] = [], rawPauses: [Double] = []
    for _ in 0..<runs {
        let pool = BufferPool(bytes: bytes + (1 << 20))
        let a = try Attachment(pid: pid)
        let s = now()
        let img = MemoryImage()
        BulkCopier(pid: pid, pool: pool).copy(ranges, into: img)
        raws.append(now() - s)
        a.detach()
        rawPauses.append(Double(a.pauseMicroseconds) / 1e6)
    }
    let pause = median(pauses) / 1e6, wall = median(walls), raw = median(raws)
    let chunks = report.chunks.count
    print("  chunks                      \(chunks) in \(report.arenas.count) arena(s), \(fmt(Double(bytes) / 1048576)) MiB copied")
    print("  heapscope stat pause        \(fmt(pause * 1000)) ms")
    print("  raw copy of the same bytes  \(fmt(raw * 1000)) ms   (attach+copy+detach: \(fmt(median(rawPauses) * 1000)) ms)")
    print("  pause / raw copy            \(fmt(pause / raw, 2))x   (aim <= 1.3)")
    print("  heapscope stat total        \(fmt(wall, 2)) s   (aim <= 2 s for 10M chunks; includes pre-faulting buffers before the pause)")
    print("  chunks per second (total)   \(fmt(Double(chunks) / wall / 1e6, 2)) M/s")
    print("  peak RSS of heapscope       \(fmt(median(rss), 0)) MiB   (heap copied: \(fmt(Double(bytes) / 1048576, 0)) MiB)")
    try commandsBenchmark(pid: pid, chunks: chunks)
    try leaksBenchmark(pid: pid, statWall: wall, valgrindScenario: sc.threads == 0 ? sc : nil)
    if sc.threads == 0 { try snapshotBenchmark(pid: pid) }
    print("")
    target.closeStdin()
    _ = target.wait(timeoutSeconds: 60)
    unlink(manifest)
}
}
