import Foundation
import Glibc
import HeapModel
import Inspect
import ProcessAccess
import Testing

/// Sends SIGUSR1 to the target one at a time, waiting until the target's handler has counted each
/// one before sending the next (standard signals do not queue), so that a lost signal is caught.
final class SignalSender: @unchecked Sendable {
    let pid: pid_t
    let counterPath: String
    private let lock = NSLock()
    private var _stop = false
    private(set) var sent = 0
    private(set) var lost = 0
    private var thread: Thread?

    init(pid: pid_t, counterPath: String) { self.pid = pid; self.counterPath = counterPath }

    func received() -> UInt64 {
        let fd = open(counterPath, O_RDONLY)
        defer { close(fd) }
        var v: UInt64 = 0
        _ = pread(fd, &v, 8, 0)
        return v
    }

    func start() {
        let t = Thread { [self] in
            while true {
                lock.lock(); let s = _stop; lock.unlock()
                if s { break }
                kill(pid, SIGUSR1)
                sent += 1
                let deadline = Date().addingTimeInterval(10)
                while received() < UInt64(sent) && Date() < deadline { usleep(200) }
                if received() < UInt64(sent) { lost += 1; break }
                usleep(500)
            }
        }
        thread = t
        t.start()
    }

    func stop() {
        lock.lock(); _stop = true; lock.unlock()
        while thread?.isFinished == false { usleep(1000) }
    }
}

@Suite("Never harm the target", .serialized, .timeLimit(.minutes(10)))
struct SafetyTests {
    @Test("SIGINT or SIGTERM to heapscope at any moment, even mid-pause: the target is always detached")
    func interrupted() throws {
        let p = try TargetProcess("bigheap", args: ["0", "3000000", "64"])
        var outcomes: [Int32] = []
        for i in 0..<8 {
            let child = try Spawned.start(Paths.heapscope, ["stat", String(p.pid)], stdinPipe: false)
            usleep(UInt32.random(in: 0...400_000))
            kill(child.pid, i % 2 == 0 ? SIGINT : SIGTERM)
            let done = try #require(child.wait(timeoutSeconds: 60), "heapscope did not exit after a signal")
            let code = exitCode(ofWaitStatus: done.status)
            outcomes.append(code)
            #expect([0, 130, 143].contains(code), "exit \(code)")
            let status = try ProcFS.status(pid: p.pid)
            #expect(status["TracerPid"] == "0", "target still traced after heapscope exited")
            let states = p.threadStates()
            #expect(!states.contains("t") && !states.contains("T"), "target left stopped: \(states)")
        }
        #expect(p.release().ok)
        _ = outcomes
    }

    @Test("SIGTERM and SIGQUIT ignored on entry still end heapscope with 128+N, the target detached", arguments: [SIGTERM, SIGQUIT])
    func ignoredOnEntry(signal sig: Int32) throws {
        let p = try TargetProcess("bigheap", args: ["0", "3000000", "64"])
        // (sh ignores them, then execs heapscope: it inherits SIG_IGN)
        let child = try Spawned.start("/bin/sh", ["-c", "trap '' TERM QUIT INT; exec \"$0\" leaks \"$1\"", Paths.heapscope, String(p.pid)], stdinPipe: false)
        usleep(300_000)   // (a leak check of 3M chunks takes seconds)
        kill(child.pid, sig)
        let done = try #require(child.wait(timeoutSeconds: 60), "heapscope did not exit after a signal")
        #expect(exitCode(ofWaitStatus: done.status) == 128 + sig)
        let status = try ProcFS.status(pid: p.pid)
        #expect(status["TracerPid"] == "0", "target still traced after heapscope exited")
        #expect(!p.threadStates().contains { $0 == "t" || $0 == "T" })
        #expect(p.release().ok)
    }

    @Test("heapscope holds no tracer after it returns: another tracer can attach at once")
    func detachesFully() throws {
        let p = try TargetProcess("heap_kinds")
        _ = try Inspector.inspect(pid: p.pid)
        let status = try ProcFS.status(pid: p.pid)
        #expect(status["TracerPid"] == "0")
        let again = try Attachment(pid: p.pid)
        #expect(again.threads.count == 1)
        again.detach()
        #expect(p.release().ok)
    }

    @Test("a target that is already traced: refused (exit 4) naming the tracer and the thread")
    func alreadyTraced() throws {
        let p = try TargetProcess("heap_kinds")
        let holder = try Attachment(pid: p.pid)
        defer { holder.detach() }
        let r = try run(Paths.heapscope, ["stat", String(p.pid)])
        #expect(r.status == 4)
        #expect(r.err.contains("thread \(p.pid) of process \(p.pid) is traced by process \(getpid())"), "\(r.err)")
    }

    @Test("an unprivileged user is told why: uid and CAP_SYS_PTRACE")
    func unprivileged() throws {
        try #require(geteuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0, "needs root and setpriv (util-linux) to run heapscope as nobody")
        let p = try TargetProcess("heap_kinds")
        let r = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                                             "--bounding-set=-all", Paths.heapscope, "stat", String(p.pid)])
        #expect(r.status == 4, "\(r.status) \(r.err)")
        #expect(r.err.contains("CAP_SYS_PTRACE"), "\(r.err)")
        #expect(p.release().ok)
    }

    @Test("processes that exit while or before being inspected give a clean error, never a crash or hang")
    func exitingTargets() throws {
        for _ in 0..<20 {
            var pid: pid_t = 0
            var args: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("0.01"), nil]
            posix_spawn(&pid, "/bin/sleep", nil, nil, &args, environ)
            args.forEach { free($0) }
            usleep(UInt32.random(in: 0...15000))
            do {
                _ = try Inspector.inspect(pid: pid)
            } catch {
                #expect([3, 5, 6, 7].contains(error.exitCode), "unexpected: \(error)")
            }
            var st: Int32 = 0
            waitpid(pid, &st, 0)
            #expect((st & 0x7f) == 0, "sleep was killed by signal \(st & 0x7f)")
        }
    }
}

@Suite("Capabilities", .serialized, .timeLimit(.minutes(3)))
struct CapabilityTests {
    /// A copy of heapscope with file capabilities `caps`, runnable by nobody.
    func capableCopy(_ caps: String, in dir: String) throws -> String {
        let path = "\(dir)/heapscope-\(caps.replacingOccurrences(of: ",", with: "-").replacingOccurrences(of: "+", with: ""))"
        // Copied by cp, not in this process: a file this (multi-threaded) process had open for
        // writing could be inherited by a child another test spawns meanwhile, and exec'ing it
        // would then fail with ETXTBSY.
        let c = try run("/bin/cp", [Paths.heapscope, path])
        try #require(c.status == 0, "cp: \(c.err)")
        chmod(path, 0o755)
        let r = try run("/usr/sbin/setcap", [caps, path])
        try #require(r.status == 0, "setcap \(caps) failed: \(r.err)")
        return path
    }

    @Test("nobody with CAP_SYS_PTRACE (setcap) inspects root's process; with CAP_DAC_READ_SEARCH too, page residency is exact")
    func setcap() throws {
        let dir = try temporaryDirectory("caps")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir, 0o755)
        let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        // With CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: pagemap is read, and an untouched GiB is not
        // copied (first: a whole-mapping copy would map the zero page into its page tables).
        let big = try TargetProcess("reserve", args: ["reserve", "1"])
        let both = try capableCopy("cap_sys_ptrace,cap_dac_read_search+ep", in: dir)
        var r = try run("/usr/bin/setpriv", asNobody + [both, "leaks", String(big.pid), "--json"])
        #expect(r.status == 0, "\(r.err)")
        let exact = try #require(try jsonObject(r.out)["copy"] as? [String: Any])
        #expect(exact["residency"] as? String == "page" && (exact["unresident_not_copied_bytes"] as? Int ?? 0) >= (1 << 30) - 4096, "\(exact)")
        #expect(big.release().ok)
        let p = try TargetProcess("reserve", args: ["shared", "1"])
        // No capability: refused, and told which ones to grant.
        let plain = try capableCopy("cap_sys_ptrace-ep", in: dir)   // setcap removes them: a plain copy
        r = try run("/usr/bin/setpriv", asNobody + [plain, "stat", String(p.pid)])
        #expect(r.status == 4 && r.err.contains("setcap cap_sys_ptrace,cap_dac_read_search+ep"), "exit \(r.status): \(r.err)")
        // CAP_SYS_PTRACE alone: everything works; residency known per mapping only.
        let ptrace = try capableCopy("cap_sys_ptrace+ep", in: dir)
        r = try run("/usr/bin/setpriv", asNobody + [ptrace, "stat", String(p.pid), "--json"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try jsonObject(r.out)["threads"] as? Int == 1)
        r = try run("/usr/bin/setpriv", asNobody + [ptrace, "leaks", String(p.pid), "--json"])
        #expect(r.status == 0, "\(r.err)")
        let partial = try #require(try jsonObject(r.out)["copy"] as? [String: Any])
        #expect(partial["residency"] as? String == "mapping")
        #expect((try jsonObject(r.out)["definitely_lost"] as? [String: Int])?["chunks"] == 1, "the chunk only shared memory holds")
        r = try run("/usr/bin/setpriv", asNobody + [ptrace, "sym", "--pid", String(p.pid), "0x1"])
        #expect(r.status == 0, "\(r.status) \(r.err)")
        #expect(p.release().ok)
    }
}
