import Foundation
import Glibc
import HeapModel
import Inspect
import ProcessAccess
import Testing

/// `heapscope watch`: one line per sample with what the target's own manifest says it holds,
/// chunks that never went away, Ctrl-C and a target that exits.
@Suite("Watch", .serialized, .timeLimit(.minutes(3)))
struct WatchTests {
    /// Bytes of outstanding chunks as the manifest lists them (usable + 8-byte header).
    func inUseBytes(_ m: Manifest) -> Int { m.live.reduce(0) { $0 + Int($1.value) + 8 } }

    @Test("--count 3 --json: three samples of exactly the manifest's in-use bytes; --older-than 0s lists every chunk")
    func samples() throws {
        let p = try TargetProcess("phases")
        defer { p.release() }
        #expect(p.manifest.mmapped.isEmpty)
        let r = try run(Paths.heapscope, ["watch", String(p.pid), "--interval", "100ms", "--count", "3", "--older-than", "0s", "--json"])
        #expect(r.status == 0, "\(r)")
        let lines = try r.out.split(separator: "\n").map { try jsonObject(String($0)) }
        #expect(lines.count == 4)
        for (i, s) in lines.prefix(3).enumerated() {
            #expect(s["sample"] as? Int == i + 1 && s["in_use_bytes"] as? Int == inUseBytes(p.manifest) && s["threads"] as? Int == 1)
        }
        #expect(lines[0]["slope_bytes_per_s"] is NSNull && lines[2]["slope_bytes_per_s"] as? Double == 0)
        let sum = try #require(lines[3]["summary"] as? [String: Any])
        #expect(sum["samples"] as? Int == 3 && sum["ended"] as? String == "3 samples")
        let old = try #require(sum["old_chunks"] as? [[String: Any]])
        #expect(old.reduce(0) { $0 + ($1["chunks"] as! Int) } == p.manifest.live.count)
        #expect(old.reduce(0) { $0 + ($1["bytes"] as! Int) } == inUseBytes(p.manifest))
        // Text: a header, three lines, the summary and the table of old chunks.
        let t = try run(Paths.heapscope, ["watch", String(p.pid), "--interval", "50ms", "--count", "2", "--older-than", "1h"])
        #expect(t.status == 0 && t.out.contains("ended (2 samples) after 2 samples") && t.out.contains("of the last 3600 s (samples 1-2 of 2): \(p.manifest.live.count) ("), "\(t.out)")
        let bad = try run(Paths.heapscope, ["watch", String(p.pid), "--interval", "soon"])
        #expect(bad.status == 64 && bad.err.contains("--interval takes a duration"))
        let none = try run(Paths.heapscope, ["watch", "2147483646", "--count", "1"])
        #expect(none.status == 3 && none.out.isEmpty && none.err.contains("2147483646"), "\(none)")
    }

    @Test("pacing: samples never bunch after a slow one, and --max-duty spaces them so the target is stopped at most that share of the time")
    func pacing() throws {
        let p = try TargetProcess("bigheap", args: ["0", "300000"])
        defer { p.release() }
        // 0.25% of wall time: sample n may start only once the pauses before it are 0.25% of the
        // time since the start. (Not the default 1%: a sample of this heap by a debug build takes
        // about 125 times its pause, so a 1% cap was sometimes met without waiting; at 0.25% each
        // sample waits for about 400 times its pause.)
        let r = try run(Paths.heapscope, ["watch", String(p.pid), "--interval", "1ms", "--count", "5", "--max-duty", "0.25", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let lines = try r.out.split(separator: "\n").map { try jsonObject(String($0)) }
        #expect(lines.count == 6)
        var stopped = 0.0
        for s in lines.prefix(5) {
            let t = Double(try #require(s["time_us"] as? Int)) / 1e6, pause = try #require(s["pause_us"] as? Int)
            #expect(t + 0.0005 >= stopped / 0.0025, "sample \(s["sample"]!) at \(t) s after \(stopped) s stopped")
            stopped += Double(pause) / 1e6
        }
        let sum = try #require(lines[5]["summary"] as? [String: Any])
        #expect((sum["stretched_samples"] as? Int ?? 0) >= 1)
        #expect(sum["stopped_us"] as? Int == lines.prefix(5).reduce(0) { $0 + ($1["pause_us"] as! Int) })
        // No duty cap: a sample takes longer than the 1 ms interval, so ticks are skipped, never caught up.
        let fast = try run(Paths.heapscope, ["watch", String(p.pid), "--interval", "1ms", "--count", "4", "--max-duty", "100", "--json"])
        let flines = try fast.out.split(separator: "\n").map { try jsonObject(String($0)) }
        let fsum = try #require(flines.last?["summary"] as? [String: Any])
        #expect((fsum["skipped_ticks"] as? Int ?? 0) > 0 && fsum["stretched_samples"] as? Int == 0)
        let bad = try run(Paths.heapscope, ["watch", String(p.pid), "--max-duty", "0"])
        #expect(bad.status == 64 && bad.err.contains("--max-duty takes a percentage"))
    }

    /// Start `watch` in the background; its stdout and stderr go to files in `dir`.
    func startWatch(_ pid: Int32, dir: String, _ extra: [String] = []) throws -> Spawned {
        try Spawned.start(Paths.heapscope, ["watch", String(pid), "--interval", "100ms", "--json"] + extra, stdinPipe: false,
                          stdout: dir + "/out", stderr: dir + "/err")
    }
    func waitForLines(_ path: String, _ n: Int) -> [String] {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            if lines.count >= n { return lines }
            usleep(20_000)
        }
        return []
    }

    @Test("Ctrl-C: exit 0 with a summary; SIGTERM and SIGHUP: the summary and exit 128+N; the target runs on, not stopped",
          arguments: [SIGINT, SIGTERM, SIGHUP])
    func interrupt(signal sig: Int32) throws {
        let p = try TargetProcess("phases")
        defer { p.release() }
        let dir = try temporaryDirectory("watch")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try startWatch(p.pid, dir: dir)
        #expect(waitForLines(dir + "/out", 2).count >= 2)
        kill(w.pid, sig)
        let st = try #require(w.wait(timeoutSeconds: 20))
        #expect(exitCode(ofWaitStatus: st.status) == (sig == SIGINT ? 0 : 128 + sig))
        let lines = waitForLines(dir + "/out", 3)
        let sum = try #require(try jsonObject(lines.last!)["summary"] as? [String: Any])
        #expect((sum["ended"] as? String ?? "").hasSuffix("signal \(sig)") && (sum["samples"] as? Int ?? 0) >= 2, "\(sum)")
        #expect(kill(p.pid, 0) == 0 && !p.threadStates().contains { $0 == "t" || $0 == "T" })
        #expect(p.release().ok)
    }

    @Test("the target exits: a summary and exit 5")
    func targetExits() throws {
        let p = try TargetProcess("phases")
        let dir = try temporaryDirectory("watch")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try startWatch(p.pid, dir: dir)
        #expect(waitForLines(dir + "/out", 2).count >= 2)
        p.release()
        let st = try #require(w.wait(timeoutSeconds: 20))
        #expect(exitCode(ofWaitStatus: st.status) == 5)
        let lines = waitForLines(dir + "/out", 3)
        let sum = try #require(try jsonObject(lines.last!)["summary"] as? [String: Any])
        #expect(sum["ended"] as? String == "target \(p.pid) exited" && (sum["samples"] as? Int ?? 0) >= 2)
    }

    @Test("--older-than: exactly the chunks present in every sample of the window, on a target that changes in known steps")
    func olderThanWindow() throws {
        let p = try TargetProcess("phases")
        defer { p.release() }
        // Six samples: two in each of the three phases (the heap does not change within one). After
        // each sample, an inspection of its own gives that sample's chunks independently.
        var sets: [Set<[UInt64]>] = [], tables: [ChunkTable] = []
        var errors: [String] = []
        var plan = WatchPlan(pid: p.pid, interval: 0.05)
        plan.count = 6; plan.olderThan = 3600
        let summary = try Watcher.run(plan, onSample: { s in
            do {
                let t = try Inspector.inspect(pid: p.pid).chunks
                tables.append(t)
                sets.append(Set((0..<t.count).filter(t.isOutstanding).map { [t.address[$0], t.size[$0]] }))
                if s.number == 2 { try p.signal(SIGUSR1, thenWaitFor: "phase 2") }
                if s.number == 4 { try p.signal(SIGUSR1, thenWaitFor: "phase 3") }
            } catch { errors.append("\(error)") }
        }, onWarning: { errors.append($0) })
        #expect(errors.isEmpty, "\(errors)")
        try #require(sets.count == 6 && summary.samples.count == 6)
        func bySize(_ chunks: Set<[UInt64]>) -> [UInt64: Int] { chunks.reduce(into: [:]) { $0[$1[1], default: 0] += 1 } }
        func bySize(_ groups: [(size: UInt64, count: Int, bytes: UInt64, since: Double)]) -> [UInt64: Int] {
            groups.reduce(into: [:]) { $0[$1.size] = $1.count }
        }
        // The whole watch: what every sample held — the phase-1 heap less what later phases freed.
        let always = sets.dropFirst().reduce(sets[0]) { $0.intersection($1) }
        #expect(always.count < sets[5].count, "phases 2 and 3 add chunks: the window matters")
        #expect(bySize(summary.old) == bySize(always))
        #expect(summary.windowFirst == 1 && summary.windowSamples == 6)
        // Every window, on the same six tables: the last sample alone, the last two, three, all.
        var tracker = SurvivorTracker()
        for (i, t) in tables.enumerated() { tracker.add(t, at: Double(i)) }
        for (age, first) in [(0.0, 5), (1.0, 4), (2.5, 3), (4.0, 1), (99.0, 0)] {
            let w = tracker.present(within: age, times: (0..<6).map(Double.init))
            let expected = sets[first...].dropFirst().reduce(sets[first]) { $0.intersection($1) }
            #expect(w.first == first && bySize(w.groups) == bySize(expected), "window of \(age) s")
        }
        // The text says which samples the window held.
        let t = try run(Paths.heapscope, ["watch", String(p.pid), "--interval", "50ms", "--count", "2", "--older-than", "1h"])
        #expect(t.status == 0 && t.out.contains("chunks present in every sample of the last 3600 s (samples 1-2 of 2): \(sets[5].count) ("), "\(t.out)")
        #expect(p.release().ok)
    }
}
