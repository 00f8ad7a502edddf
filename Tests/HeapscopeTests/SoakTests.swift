import Foundation
import Glibc
import ProcessAccess
import Testing

/// Hundreds of inspections of a process doing everything at once (TestTargets/soak.c), with
/// heapscope killed at random moments: nothing the program can observe goes wrong.
@Suite("Soak", .serialized, .timeLimit(.minutes(10)))
struct SoakTests {
    @Test("200 stat, 20 leaks, 8 snapshots and 30 SIGKILLed runs against a busy, forking, signalled, sleeping target")
    func soak() throws {
        let counter = "/tmp/heapscope-soak-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(counter) }
        let dir = try temporaryDirectory("soak")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try TargetProcess("soak", args: [counter])
        let sender = SignalSender(pid: p.pid, counterPath: counter)
        sender.start()
        let pid = String(p.pid)
        var plan: [String] = Array(repeating: "stat", count: 200) + Array(repeating: "leaks", count: 20)
            + Array(repeating: "snapshot", count: 8) + Array(repeating: "kill", count: 30)
        plan.shuffle()
        var stopped = 0, killedMidway = 0, unsettled = 0, transients: [String] = []
        // Exit 2 (corruption) from a copy no retry saw as mid-update: the soak program never
        // damages its heap, so the next stat must find it whole (a real corruption stays), and
        // such copies must stay rare. (Known: a busy target is now and then copied with an arena's
        // top inconsistent, a corrupt_arena warning, and no thread seen inside malloc.)
        func transient(_ command: String, _ kinds: [String]) throws {
            transients.append("\(command): \(kinds)")
            let again = try run(Paths.heapscope, ["stat", pid, "--json"])
            let k = ((try? jsonObject(again.out))?["warnings"] as? [[String: Any]] ?? []).compactMap { $0["kind"] as? String }
            #expect(again.status == 0 || k.contains("unsettled"), "\(command) exit 2 with \(kinds), and again: exit \(again.status) \(k)")
        }
        for (i, what) in plan.enumerated() {
            switch what {
            case "stat":
                let r = try run(Paths.heapscope, ["stat", pid, "--json"])
                #expect(r.status == 0 || r.status == 2, "stat: \(r.status) \(r.err)")
                guard r.status == 0 || r.status == 2 else { break }
                let j = try jsonObject(r.out)
                let kinds = (j["warnings"] as? [[String: Any]] ?? []).compactMap { $0["kind"] as? String }
                let messages = (j["warnings"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
                if r.status == 2 && !kinds.contains("unsettled") { try transient("stat", messages) }
                let pauses = j["attempt_pause_us"] as? [Int] ?? []
                #expect(pauses.count == j["attempts"] as? Int && pauses.reduce(0, +) == j["pause_us"] as? Int)
                #expect((j["pause_us"] as? Int ?? .max) <= (j["max_stop_us"] as? Int ?? 0), "stop budget: \(pauses)")
                stopped += pauses.count
                // glibc's own identities: arena = the arenas' system memory = in use + free. A copy
                // caught mid-update (an `unsettled` warning: retries ran out) may break them, but
                // no number may wrap around.
                let mi = try #require(j["mallinfo2"] as? [String: NSNumber]).mapValues(\.uint64Value)
                let system = (j["arenas"] as? [[String: Any]] ?? []).reduce(UInt64(0)) { $0 + (($1["system_bytes"] as? NSNumber)?.uint64Value ?? 0) }
                let warnings = (j["warnings"] as? [[String: Any]] ?? []).compactMap { $0["kind"] as? String }
                #expect(mi.values.allSatisfy { $0 < 1 << 48 }, "a count wrapped around: \(mi)")
                if !warnings.contains("unsettled") {
                    #expect(mi["arena"] == system && mi["uordblks"]! + mi["fordblks"]! == system, "\(mi) vs \(system)")
                } else {
                    unsettled += 1
                }
            case "leaks":
                let r = try run(Paths.heapscope, ["leaks", pid, "--json"])
                let listed = (try? jsonObject(r.out))?["warnings"] as? [[String: Any]] ?? []
                #expect(r.status == 0 || r.status == 2, "leaks: \(r.status) \(r.err)")
                if r.status == 2 && !listed.contains(where: { $0["kind"] as? String == "unsettled" }) {
                    try transient("leaks", listed.compactMap { $0["message"] as? String })
                }
                if r.status == 0 || r.status == 2 { stopped += 1 }
            case "snapshot":
                let file = "\(dir)/\(i).snap"
                let r = try run(Paths.heapscope, ["snapshot", pid, "-o", file])
                #expect(r.status == 0, "snapshot: \(r.status) \(r.err)")
                #expect(try run(Paths.heapscope, ["stat", file]).status == 0)
                stopped += 1
            default:
                // SIGKILL at a random moment: while preparing, stopped, copying, or analysing.
                let command = ["stat", "leaks", "snapshot"][i % 3]
                let args = command == "snapshot" ? [command, pid, "-o", "\(dir)/killed-\(i).snap"] : [command, pid]
                let child = try Spawned.start(Paths.heapscope, args, stdinPipe: false)
                usleep(UInt32.random(in: 0...600_000))
                kill(child.pid, SIGKILL)
                let st = try #require(child.wait(timeoutSeconds: 60)).status
                if st & 0x7f == SIGKILL { killedMidway += 1 }
                #expect(access("\(dir)/killed-\(i).snap", F_OK) != 0 || st & 0x7f != SIGKILL, "a killed snapshot left a file")
            }
            #expect((try? ProcFS.status(pid: p.pid))?["TracerPid"] == "0", "still traced after \(what)")
            let states = p.threadStates()
            #expect(!states.contains("t") && !states.contains("T"), "left stopped after \(what): \(states)")
        }
        sender.stop()
        #expect(unsettled < 20, "\(unsettled) of 200 stats could not catch the heap settled")
        #expect(transients.count <= 3, "\(transients.count) of 220 inspections found corruption that was gone the next time: \(transients)")
        if !transients.isEmpty { print("soak: \(transients.count) transient corruption warnings: \(transients)") }
        #expect(killedMidway > 10, "few runs were killed before they finished: \(killedMidway)")
        let out = p.release()
        #expect(out.ok, "the target did not exit cleanly: \(out.status) \(out.stdout)")
        var c: [String: Int] = [:]
        for line in out.stdout.split(separator: "\n") {
            let kv = line.split(separator: "=")
            if kv.count == 2 { c[String(kv[0])] = Int(kv[1]) }
        }
        #expect(c["signals"] == sender.sent && sender.lost == 0, "signals: sent \(sender.sent), received \(c["signals"] ?? -1)")
        #expect(c["checksum_errors"] == 0 && c["read_errors"] == 0, "\(c)")
        #expect(c["early_sleeps"] == 0 && c["early_waits"] == 0, "a restarted sleep ended early: \(c), \(stopped) stops")
        #expect((c["sleeps"] ?? 0) > 100 && (c["waits"] ?? 0) > 100 && (c["forks"] ?? 0) > 100 && (c["threads"] ?? 0) > 1000 && (c["ops"] ?? 0) > 100_000, "\(c)")
        // epoll_wait returns EINTR on a stop, at most once per stop (killed runs may have stopped it too).
        #expect((c["epoll_eintr"] ?? -1) >= stopped - 1 && (c["epoll_eintr"] ?? 0) <= stopped + plan.filter { $0 == "kill" }.count * 5, "\(c["epoll_eintr"] ?? -1) EINTRs for \(stopped) stops: \(c)")
    }
}
