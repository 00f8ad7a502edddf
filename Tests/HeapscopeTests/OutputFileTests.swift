import Foundation
import Glibc
import ProcessAccess
import Testing

/// Run `argv` as the unprivileged user nobody (setpriv from util-linux), as another user of a
/// shared directory would.
func asNobody(_ argv: [String]) throws {
    let r = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--"] + argv)
    guard r.status == 0 else { throw HarnessError(description: "as nobody: \(argv) exited \(r.status): \(r.err)") }
}

func fileStat(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

@Suite("Output files cannot be turned against the host", .serialized, .timeLimit(.minutes(5)))
struct OutputFileTests {
    /// A sticky, world-writable directory, as /tmp or a shared dump directory.
    func sharedDirectory() throws -> String {
        let d = try temporaryDirectory("shared")
        chmod(d, 0o1777)
        return d
    }

    @Test("symlinks and files planted by another user in a shared directory: refused or replaced, never written through")
    func planted() throws {
        let d = try sharedDirectory()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let victim = d + "-victim"
        try "precious\n".write(toFile: victim, atomically: false, encoding: .utf8)
        defer { unlink(victim) }
        let p = try TargetProcess("heap_kinds")
        // The old temporary names (FILE.tmp-PID) for the next pids, and the destination itself, as links.
        let next = Int(getpid())
        for k in 0..<300 { try asNobody(["ln", "-s", victim, "\(d)/a.snap.tmp-\(next + k)"]) }
        try asNobody(["ln", "-s", victim, "\(d)/link.snap"])
        var r = try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", "\(d)/link.snap"])
        #expect(r.status == 1)
        #expect(r.err.contains("will not write \(d)/link.snap: it is a symbolic link"), "\(r.err)")
        r = try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", "\(d)/a.snap", "--pprof", "\(d)/a.pb.gz"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n", "the victim was written through a link")
        for f in ["a.snap", "a.pb.gz"] {
            let st = try #require(fileStat("\(d)/\(f)"))
            #expect(st.st_mode & S_IFMT == S_IFREG && st.st_mode & 0o777 == 0o600 && st.st_uid == 0, "\(f): mode \(String(st.st_mode, radix: 8)) uid \(st.st_uid)")
        }
        // A file the other user made in advance (readable by them) is replaced by a new one of ours.
        try asNobody(["sh", "-c", "umask 0; echo mine > \(d)/theirs.snap"])
        let before = try #require(fileStat("\(d)/theirs.snap"))
        r = try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", "\(d)/theirs.snap"])
        #expect(r.status == 0, "\(r.err)")
        let after = try #require(fileStat("\(d)/theirs.snap"))
        #expect(after.st_ino != before.st_ino && after.st_uid == 0 && after.st_mode & 0o777 == 0o600)
        // --follow writes the file a link names (the user asked for it).
        r = try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", "\(d)/link.snap", "--follow"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim)).prefix(5) == Data("HSNAP".utf8))
        // Nothing else was left in the directory: only the links planted and the files written.
        let left = try FileManager.default.contentsOfDirectory(atPath: d).filter { !$0.hasPrefix("a.snap.tmp-") }
        #expect(Set(left) == ["a.snap", "a.pb.gz", "theirs.snap", "link.snap"])
        #expect(p.release().ok)
    }

    @Test("devices, FIFOs, directories and missing directories are refused before the target is stopped")
    func refusedBeforeAttaching() throws {
        let d = try temporaryDirectory("out")
        defer { try? FileManager.default.removeItem(atPath: d) }
        mkfifo("\(d)/fifo", 0o600)
        // A pid that does not exist: refusing the file first proves it is checked before attaching.
        let cases: [(args: [String], says: String)] = [
            (["snapshot", "999999", "-o", "/dev/null"], "will not write /dev/null: it is a character device"),
            (["snapshot", "999999", "-o", "\(d)/fifo"], "will not write \(d)/fifo: it is a FIFO"),
            (["snapshot", "999999", "-o", d], "will not write \(d): it is a directory"),
            (["snapshot", "999999", "-o", "\(d)/missing/x.snap"], "cannot use directory \(d)/missing: No such file or directory"),
            (["snapshot", "999999", "-o", "\(d)/x.snap", "--pprof", "/dev/null"], "will not write /dev/null"),
            (["watch", "999999", "--out", "/dev/null"], "will not write /dev/null: it is a character device, not a directory"),
        ]
        for c in cases {
            let r = try run(Paths.heapscope, c.args, timeout: 20)
            #expect(r.status == 1, "\(c.args): \(r.status) \(r.err)")
            #expect(r.err.contains(c.says), "\(c.args): \(r.err)")
        }
        let st = try #require(fileStat("/dev/null"))
        #expect(st.st_mode & S_IFMT == S_IFCHR, "/dev/null is still the device")
        #expect(try FileManager.default.contentsOfDirectory(atPath: d) == ["fifo"])
    }

    @Test("a snapshot ended by SIGINT or SIGTERM while its file is being written leaves no temporary file")
    func interruptedWrite() throws {
        let p = try TargetProcess("bigheap", args: ["0", "1500000", "100"])
        let d = try temporaryDirectory("out")
        defer { try? FileManager.default.removeItem(atPath: d) }
        for sig in [SIGINT, SIGTERM] {
            let child = try Spawned.start(Paths.heapscope, ["snapshot", String(p.pid), "-o", "\(d)/big.snap", "--contents"], stdinPipe: false)
            // Wait for the temporary file to appear, then send the signal.
            var seen = false
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, !seen {
                seen = ((try? FileManager.default.contentsOfDirectory(atPath: d)) ?? []).contains { $0.hasPrefix(".big.snap.tmp-") }
                if !seen { usleep(200) }
            }
            #expect(seen, "the temporary file never appeared")
            kill(child.pid, sig)
            let st = try #require(child.wait(timeoutSeconds: 30)).status
            let names = try FileManager.default.contentsOfDirectory(atPath: d)
            // Writing ~150 MB takes far longer than the signal takes to arrive.
            #expect(st & 0x7f == sig, "heapscope was not ended by signal \(sig): status \(st)")
            #expect(names.isEmpty, "left behind after signal \(sig): \(names)")
            #expect(!p.threadStates().contains { $0 == "t" || $0 == "T" })
        }
        #expect(p.release().ok)
    }
}
