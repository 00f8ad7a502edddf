import Foundation
import Glibc
import Testing

/// The walker and every analysis on a process image need no privileges: a core file and a
/// snapshot file (made here as root, readable by anyone) give the same answers to an ordinary
/// user (nobody, no capabilities, no ptrace) as to root; sym and gensyms on ELF files too. The
/// same user is refused a live process (exit 4), so the run really was unprivileged.
@Suite("Without privileges", .serialized, .timeLimit(.minutes(5)))
struct UnprivilegedTests {
    /// `heapscope ARGS` as nobody: no root, no capabilities (setpriv drops them all).
    static func asNobody(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                                     "--no-new-privs", Paths.heapscope] + args, timeout: 120)
    }

    @Test("core file, snapshot file and ELF files: the same answers as nobody as root; a live process refused")
    func sameAsNobody() throws {
        try #require(getuid() == 0, "this test needs root to make the images and to switch to nobody (run make test as root)")
        let dir = try temporaryDirectory("unpriv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir, 0o755)
        let p = try TargetProcess("leaks")
        defer { p.release() }
        let core = dir + "/core", snap = dir + "/s.snap"
        let g = try run("/usr/bin/gcore", ["-o", dir + "/g", String(p.pid)], timeout: 120)
        try #require(g.status == 0, "gcore failed: \(g.err.suffix(300))")
        try FileManager.default.moveItem(atPath: dir + "/g.\(p.pid)", toPath: core)
        let s = try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", snap, "--contents"])
        try #require(s.status == 0, "snapshot failed: \(s.err)")
        // Images hold the target's memory: readable by nobody only for this test.
        chmod(core, 0o644); chmod(snap, 0o644)

        // Refused a live process: nobody cannot ptrace a root process.
        let live = try Self.asNobody(["stat", String(p.pid)])
        #expect(live.status == 4, "nobody was not refused the live process: exit \(live.status) \(live.err)")

        let address = "0x" + String(try #require(p.manifest.live.keys.min()), radix: 16)
        var commands: [[String]] = []
        for image in [core, snap] {
            commands += [["stat", image, "--json"], ["chunks", image, "--json"], ["leaks", image, "--json", "--show", "reachable"],
                         ["types", image, "--json"], ["why", image, address, "--json"], ["show", image, address, "--json"]]
        }
        commands += [["sym", "--elf", Paths.target("leaks"), "--json", "0x1000"], ["gensyms", "--elf", Paths.target("leaks"), "--json"],
                     ["sym", "--core", core, "--json", address]]
        var ran = 0
        for c in commands {
            let root = try run(Paths.heapscope, c, timeout: 120), nobody = try Self.asNobody(c)
            #expect(root.status == 0 && !root.out.isEmpty, "\(c.joined(separator: " ")) as root: exit \(root.status) \(root.err)")
            // The same answer less what differs between any two runs (times, peak RSS).
            func same(_ s: String) -> String {
                s.replacingOccurrences(of: #""(peak_rss_kb|buffer_fault_us|analysis_us|debug_info_us|propagation_us|pause_us)":\d+"#, with: "", options: .regularExpression)
            }
            #expect(nobody.status == root.status && same(nobody.out) == same(root.out),
                    "\(c.joined(separator: " ")) as nobody differs: exit \(nobody.status) \(nobody.err)\n root: \(root.out.prefix(300))\n nobody: \(nobody.out.prefix(300))")
            ran += 1
        }
        print("without privileges: \(ran) commands on a core file, a snapshot file and ELF files gave root's answers as nobody")
    }
}
