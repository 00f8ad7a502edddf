import Foundation
import Glibc
import ProcessAccess
import Testing

/// What a stop does to the calls threads sleep in (TestTargets/sleepers.c), and the seccomp case
/// where it would kill the process.
@Suite("Side effects of stopping", .serialized, .timeLimit(.minutes(5)))
struct SideEffectTests {
    func tid(_ p: TargetProcess, _ key: String) throws -> String {
        try #require(p.manifestText.split(separator: "\n").first { $0.hasPrefix(key + " ") }.map { String($0.dropFirst(key.count + 1)) })
    }
    /// "eintr N" and "slept NS" from the program's stdout after release.
    func outcome(_ p: TargetProcess) throws -> (ok: Bool, status: Int32, eintr: Int, sleptNs: Int) {
        let r = p.release()
        var v: [String: Int] = [:]
        for line in r.stdout.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 2, let n = Int(f[1]) { v[String(f[0])] = n }
        }
        return (r.ok, r.status, v["eintr"] ?? -1, v["slept"] ?? -1)
    }

    @Test("no filter: epoll_wait sees exactly one EINTR per stop and heapscope names that thread; nanosleep and read are resumed unchanged")
    func eintrAndRestart() throws {
        let p = try TargetProcess("sleepers", args: ["plain"])
        let epoll = try tid(p, "epoll")
        var stops = 0
        for _ in 0..<3 {
            let r = try run(Paths.heapscope, ["stat", String(p.pid), "--json"])
            #expect(r.status == 0, "\(r.err)")
            let j = try jsonObject(r.out)
            stops += j["attempts"] as? Int ?? 0
            let effects = j["side_effects"] as? [String] ?? []
            #expect(effects.contains { $0.hasPrefix("thread \(epoll) in epoll_wait returned EINTR") }, "\(effects)")
        }
        let text = try run(Paths.heapscope, ["stat", String(p.pid)])
        #expect(text.out.contains("side effect: thread \(epoll) in epoll_wait returned EINTR"))
        stops += 1
        let o = try outcome(p)
        #expect(o.ok)
        #expect(o.eintr == stops, "epoll_wait returned EINTR \(o.eintr) times for \(stops) stops")
        // nanosleep(3 s) resumed with its remaining time: never shorter (an EINTR would end it
        // early), and not started over (3 s more after the last stop, about 3.1 s in).
        #expect(o.sleptNs >= 3_000_000_000 && o.sleptNs < 4_500_000_000, "slept \(o.sleptNs) ns")
    }

    @Test("a seccomp filter that allows restart_syscall: read (one thread stopped briefly), then inspected; the sleeper unharmed")
    func filterAllows() throws {
        let p = try TargetProcess("sleepers", args: ["allow"])
        let r = try run(Paths.heapscope, ["stat", String(p.pid), "--json"])
        #expect(r.status == 0, "\(r.err)")
        let effects = try jsonObject(r.out)["side_effects"] as? [String] ?? []
        #expect(effects.contains { $0.contains("to read its seccomp filter") }, "\(effects)")
        let o = try outcome(p)
        #expect(o.ok && o.sleptNs >= 3_000_000_000, "\(o)")
    }

    @Test("a seccomp filter that kills on restart_syscall: refused (exit 4) naming the sleeping thread; with --force the process dies of SIGSYS")
    func filterKills() throws {
        let p = try TargetProcess("sleepers", args: ["deny"])
        let sleeper = try tid(p, "nanosleep")
        for command in [["stat"], ["leaks"], ["snapshot", "-o", "/tmp/heapscope-never-\(getpid()).snap"]] {
            let r = try run(Paths.heapscope, [command[0], String(p.pid)] + command.dropFirst())
            #expect(r.status == 4, "\(command): \(r.status) \(r.err)")
            #expect(r.err.contains("not stopping pid \(p.pid): thread \(sleeper) sleeps in clock_nanosleep") &&
                    r.err.contains("restart_syscall with kill (SECCOMP_RET_KILL_PROCESS)"), "\(r.err)")
        }
        #expect(access("/tmp/heapscope-never-\(getpid()).snap", F_OK) != 0)
        #expect(try ProcFS.status(pid: p.pid)["TracerPid"] == "0", "nothing was stopped")
        // What the refusal prevents: stopping it anyway kills it.
        let forced = try run(Paths.heapscope, ["stat", String(p.pid), "--force"])
        #expect(forced.status == 0 && forced.out.contains("side effect: --force"), "\(forced.err)")
        let o = try outcome(p)
        #expect(o.status & 0x7f == SIGSYS, "status \(o.status)")
    }
}
