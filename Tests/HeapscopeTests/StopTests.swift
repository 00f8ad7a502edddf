import Foundation
import Glibc
import HeapModel
import Inspect
import ProcessAccess
import Testing

/// Whether any thread of `pid` is in a ptrace or job-control stop.
func anyThreadStopped(_ p: TargetProcess) -> Bool { p.threadStates().contains { $0 == "t" || $0 == "T" } }

@Suite("Stop budget and threads heapscope cannot hold", .serialized, .timeLimit(.minutes(5)))
struct StopTests {
    @Test("a thread in D state (vfork parent): exit 9 naming it, the others released after the short grace")
    func vforkParent() throws {
        let p = try TargetProcess("stubborn", args: ["vfork"])
        let vforker = try #require(p.manifestText.split(separator: "\n").first { $0.hasPrefix("vforker ") }.map { String($0.dropFirst(8)) })
        let r = try run(Paths.heapscope, ["stat", String(p.pid)])
        #expect(r.status == 9, "\(r.status) \(r.err)")
        #expect(r.err.contains("pid \(p.pid) thread \(vforker) in D state (uninterruptible sleep"), "\(r.err)")
        #expect(r.err.contains("a vfork parent"), "\(r.err)")
        #expect(r.err.contains("stopped 1 other thread for "), "\(r.err)")
        // The reported time is what the main thread was held: the grace, not the whole budget.
        let after = try #require(r.err.range(of: "other thread for ")).upperBound
        let ms = try #require(Double(r.err[after...].prefix { $0 != " " }))
        #expect(ms >= 100 && ms < 1000, "held \(ms) ms")
        #expect(!anyThreadStopped(p))
        #expect(p.release().ok, "the vfork child exits when stdin closes, then the program")
    }

    @Test("a thread traced by another program: exit 4 naming the tracer and the thread, before anything is copied")
    func tracedThread() throws {
        let p = try TargetProcess("stubborn", args: ["threads"])
        let tids = p.manifestText.split(separator: "\n").filter { $0.hasPrefix("thread ") }.map { String($0.dropFirst(7)) }
        #expect(tids.count == 3)
        let dir = try temporaryDirectory("strace")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let strace = try Spawned.start("/usr/bin/strace", ["-p", tids[1], "-o", "/dev/null"], stdinPipe: false, stderr: dir + "/err")
        defer { kill(strace.pid, SIGTERM); _ = strace.wait(timeoutSeconds: 10) }
        let deadline = Date().addingTimeInterval(10)
        while ProcFS.tracer(pid: p.pid, tid: Int32(tids[1])!) == nil && Date() < deadline { usleep(1000) }
        let r = try run(Paths.heapscope, ["stat", String(p.pid)])
        #expect(r.status == 4, "\(r.status) \(r.err)")
        #expect(r.err.contains("thread \(tids[1]) of process \(p.pid) is traced by process \(strace.pid) (strace)"), "\(r.err)")
        kill(strace.pid, SIGTERM)
        _ = strace.wait(timeoutSeconds: 10)
        #expect(!anyThreadStopped(p))
        #expect(p.release().ok)
    }

    @Test("a leader that called pthread_exit: inspected through its live thread, reported under its pid")
    func zombieLeader() throws {
        let p = try TargetProcess("stubborn", args: ["leader-exit"])
        #expect(ProcFS.threadState(pid: p.pid, tid: p.pid) == "Z")
        let stat = try jsonObject(run(Paths.heapscope, ["stat", String(p.pid), "--json"]).out)
        #expect(stat["pid"] as? Int == Int(p.pid))
        #expect(stat["threads"] as? Int == 1, "the zombie leader has nothing to stop")
        let report = try Inspector.inspect(pid: p.pid)
        // The 64 blocks the thread allocated are among the outstanding chunks, with their sizes.
        let t = report.chunks
        var sizes: [UInt64] = []
        for i in 0..<t.count where t.state[i] == .inUse { sizes.append(t.usableSize(i)) }
        for k in 0..<64 { #expect(sizes.contains { $0 >= UInt64(32 + 16 * k) && $0 < UInt64(32 + 16 * k + 16) }) }
        let leaks = try run(Paths.heapscope, ["leaks", String(p.pid)])
        #expect(leaks.status == 0, "\(leaks.err)")
        #expect(leaks.out.hasPrefix("pid \(p.pid): paused"))
        #expect(p.release().ok)
    }

    @Test("--max-stop: a copy that would take longer is abandoned, the target released, exit 9 with the time stopped")
    func budgetExceeded() throws {
        let p = try TargetProcess("bigheap", args: ["0", "1000000"])
        let r = try run(Paths.heapscope, ["stat", String(p.pid), "--max-stop", "1ms"])
        #expect(r.status == 9, "\(r.status) \(r.err)")
        #expect(r.err.contains("would keep pid \(p.pid) stopped for longer than --max-stop 1.0 ms; it was released after "), "\(r.err)")
        #expect(!anyThreadStopped(p))
        // With the default budget the same heap is inspected, and the pauses add up.
        let j = try jsonObject(run(Paths.heapscope, ["stat", String(p.pid), "--json"]).out)
        let pauses = try #require(j["attempt_pause_us"] as? [Int])
        #expect(pauses.count == j["attempts"] as? Int)
        #expect(pauses.reduce(0, +) == j["pause_us"] as? Int)
        #expect(j["max_stop_us"] as? Int == 1_000_000)
        let bad = try run(Paths.heapscope, ["stat", String(p.pid), "--max-stop", "0"])
        #expect(bad.status == 64 && bad.err.contains("--max-stop takes a duration from 1ms to 10m"))
        #expect(p.release().ok)
    }

    @Test("retries of a busy heap stay within the budget: every attempt counted, no retry past --max-stop")
    func retriesCounted() throws {
        let counter = "/tmp/heapscope-busy-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(counter) }
        let p = try TargetProcess("busy", args: [counter])
        var retried = 0, cut = 0
        for _ in 0..<100 {
            let r = try Inspector.inspect(pid: p.pid, options: InspectOptions(maxStopMicroseconds: 20_000))
            #expect(r.attemptPauses.count == r.attempts)
            #expect(r.attemptPauses.reduce(0, +) == r.pauseMicroseconds)
            #expect(r.stopBudgetMicroseconds == 20_000)
            if r.attempts > 1 { retried += 1 }
            if r.warnings.contains(where: { $0.message.contains("another attempt would exceed --max-stop") }) {
                cut += 1
                // The longest attempt, once more, would not have fitted.
                #expect(r.pauseMicroseconds + (r.attemptPauses.max() ?? 0) * 5 / 4 > 20_000)
            }
            #expect(!anyThreadStopped(p))
        }
        #expect(retried > 0, "the busy target was never caught inside malloc: the retry path was not exercised")
        #expect(p.release().ok)
    }
}
