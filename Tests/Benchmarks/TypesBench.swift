// `heapscope types` on 1M chunks in linked structures reachable from typed globals
// (TestTargets/typedbig: a list of items each pointing to a payload; a binary tree): total time,
// the propagation alone and chunks per second, against `heapscope stat` of the same heap in the
// same run (the cost of inspecting without types).
import Glibc
import ProcessAccess

@MainActor func typesBenchmark(quick: Bool) throws {
    let heapscope = root + "/.build/release/heapscope"
    let count = quick ? 100_000 : 1_000_000
    print("heapscope types benchmark (release build; medians of \(runs) runs; target = TestTargets/typedbig)")
    for shape in ["list", "tree"] {
        let manifest = "/tmp/heapscope-bench-types-\(getpid()).manifest"
        unlink(manifest)
        let t0 = now()
        let target = try Spawned.start(root + "/TestTargets/build/typedbig", [manifest, String(count), shape])
        while !readFile(manifest).hasSuffix("end\n") {
            if now() - t0 > 300 { print("target did not get ready"); return }
            usleep(10_000)
        }
        let pid = String(target.pid)
        var walls: [Double] = [], props: [Double] = [], debug: [Double] = [], pauses: [Double] = [], stats: [Double] = []
        var typed = 0.0
        for _ in 0..<runs {
            guard let s = try runTool(heapscope, ["stat", pid, "--json"], input: "/dev/null"),
                  let r = try runTool(heapscope, ["types", pid, "--json"], input: "/dev/null") else { print("  heapscope failed"); return }
            stats.append(s.wall); walls.append(r.wall)
            props.append((jsonNumber(r.output, "propagation_us") ?? 0) / 1e6)
            debug.append((jsonNumber(r.output, "debug_info_us") ?? 0) / 1e6)
            pauses.append((jsonNumber(r.output, "pause_us") ?? 0) / 1000)
            // chunks labelled "declared"
            typed = 0
            for part in r.output.split(separator: "{") where part.contains("\"confidence\":\"declared\"") {
                typed += jsonNumber(String(part), "chunks") ?? 0
            }
        }
        let wall = median(walls), prop = median(props)
        print("== \(shape == "list" ? "\(count / 2) list items each pointing to a payload" : "a binary tree of \(count) nodes"): \(Int(typed)) chunks typed (declared)")
        print("  heapscope types total       \(fmt(wall, 2)) s   (aim <= 1 s for 1M chunks); pause \(fmt(median(pauses))) ms")
        print("  propagation                 \(fmt(prop * 1000, 0)) ms = \(fmt(typed / max(prop, 1e-9) / 1e6, 2)) M chunks/s; debug info and vtables \(fmt(median(debug) * 1000, 0)) ms")
        print("  heapscope stat, same heap   \(fmt(median(stats), 2)) s   (types / stat: \(fmt(wall / max(median(stats), 1e-9), 1))x)")
        target.closeStdin()
        _ = target.wait(timeoutSeconds: 60)
        unlink(manifest)
    }
    print("")
}
