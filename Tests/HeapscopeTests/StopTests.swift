import Foundation
import Glibc
import GlibcMalloc
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
        for i in 0..<t.count where t.kind[i] == GlibcKinds.inUse { sizes.append(t.usableSize(i)) }
        for k in 0..<64 { #expect(sizes.contains { $0 >= UInt64(32 + 16 * k) && $0 < UInt64(32 + 16 * k + 16) }) }
        let leaks = try run(Paths.heapscope, ["leaks", String(p.pid)])
        #expect(leaks.status == 0, "\(leaks.err)")
        #expect(leaks.out.hasPrefix("pid \(p.pid): paused"))
        #expect(p.release().ok)
    }

    @Test("--max-stop: a copy that would take longer is abandoned, the target released, exit 9 with the time stopped")
    func budgetExceeded() throws {
        // About 190 MB of heap: far more than a few milliseconds to copy. On a loaded machine even
        // the stop itself may not fit a tiny budget (exit 9 too, saying so): then a larger one.
        let p = try TargetProcess("bigheap", args: ["0", "3000000"])
        var copyCut = false
        for ms in [5, 10, 20] where !copyCut {
            let r = try run(Paths.heapscope, ["stat", String(p.pid), "--max-stop", "\(ms)ms"])
            #expect(r.status == 9, "\(r.status) \(r.err)")
            copyCut = r.err.contains("would keep pid \(p.pid) stopped for longer than --max-stop \(ms).0 ms; it was released after ")
            #expect(copyCut || r.err.contains("did not stop; stopped"), "\(r.err)")
            #expect(!anyThreadStopped(p))
        }
        #expect(copyCut, "no budget cut the copy short")
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

    @Test("retries stay within the budget: every attempt counted, none started that would not fit")
    func retriesCounted() throws {
        // A heap whose arena mutex a thread holds for good: every attempt is caught mid-update.
        let p = try TargetProcess("locked")
        let full = try Inspector.inspect(pid: p.pid)
        #expect(full.attempts == 5 && full.attemptPauses.count == 5 && full.attemptPauses.reduce(0, +) == full.pauseMicroseconds)
        #expect(full.warnings.contains { $0.message.hasPrefix("heap still changing after 5 attempts") })
        // Budgets from below one attempt to above five: each run is refused (exit 9), cut short
        // because another attempt would not fit, or done in 5 attempts; never over the budget.
        let one = full.attemptPauses.min()!
        var outcomes: [String: Int] = [:]
        for step in 1...24 {
            let budget = max(1000, one * UInt64(step) / 4)
            do {
                let r = try Inspector.inspect(pid: p.pid, options: InspectOptions(maxStopMicroseconds: budget))
                #expect(r.attemptPauses.count == r.attempts && r.attemptPauses.reduce(0, +) == r.pauseMicroseconds)
                if r.warnings.contains(where: { $0.message.contains("another attempt would exceed --max-stop") }) {
                    outcomes["cut", default: 0] += 1
                    #expect(r.pauseMicroseconds + (r.attemptPauses.max() ?? 0) * 5 / 4 > budget, "cut although another attempt fitted: \(r.attemptPauses) of \(budget)")
                } else {
                    outcomes["five", default: 0] += 1
                    #expect(r.attempts == 5, "\(r.attemptPauses)")
                }
            } catch {
                // Too small a budget: the copy (or, on a loaded machine, even the stop) did not fit.
                switch error {
                case .process(.stopBudgetExceeded), .process(.threadWouldNotStop): outcomes["refused", default: 0] += 1
                default: Issue.record("\(error)")
                }
            }
            #expect(!anyThreadStopped(p))
        }
        #expect(outcomes["cut", default: 0] > 0, "no budget in the sweep cut the retries: \(outcomes)")
        #expect(p.release().ok)
    }

    @Test("pids that are no user process: a kernel thread, heapscope itself (exit 3, saying which)")
    func notProcesses() throws {
        let kthreadd = try run(Paths.heapscope, ["stat", "2"])
        #expect(kthreadd.status == 3 && kthreadd.err.contains("pid 2 is a kernel thread (kthreadd)"), "\(kthreadd.status) \(kthreadd.err)")
        let sym = try run(Paths.heapscope, ["sym", "--pid", "2", "0x1000"])
        #expect(sym.status == 3 && sym.err.contains("kernel thread"), "\(sym.err)")
        let itself = try run("/bin/sh", ["-c", "exec \(Paths.heapscope) leaks $$"])
        #expect(itself.status == 3 && itself.err.contains("is heapscope itself"), "\(itself.status) \(itself.err)")
    }
}
