import Foundation
import Glibc
import ProcessAccess

/// Paths of the package, its TestTargets and the heapscope binary, from this file's location.
enum Paths {
    static let root: String = {
        var p = #filePath
        for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
        return p
    }()
    static func target(_ name: String) -> String { "\(root)/TestTargets/build/\(name)" }
    static var heapscope: String { "\(root)/.build/debug/heapscope" }
}

/// A new private directory /tmp/heapscope-NAME-XXXXXX (the caller removes it); `under` another
/// directory than /tmp.
func temporaryDirectory(_ name: String, under: String = "/tmp") throws -> String {
    var tmpl = Array("\(under)/heapscope-\(name)-XXXXXX".utf8CString)
    guard mkdtemp(&tmpl) != nil else { throw HarnessError(description: "mkdtemp failed: \(String(cString: strerror(errno)))") }
    return tmpl.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
}

/// What a TestTargets program says about its own heap (see TestTargets/manifest.h).
struct Manifest {
    var pid: Int32 = 0
    var glibc = ""
    var threads = 0
    var live: [UInt64: UInt64] = [:]      // user address -> usable size (mmapped included)
    var mmapped: Set<UInt64> = []
    var freed: [(UInt64, String)] = []
    var corrupt: [(UInt64, String)] = []
    var mallinfo2: [String: UInt64] = [:]

    init(text: String) {
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard let key = f.first else { continue }
            switch key {
            case "pid": pid = Int32(f[1])!
            case "glibc": glibc = String(f[1])
            case "threads": threads = Int(f[1])!
            case "live", "mmapped":
                let a = UInt64(f[1], radix: 16)!
                live[a] = UInt64(f[2])!
                if key == "mmapped" { mmapped.insert(a) }
            case "freed": freed.append((UInt64(f[1], radix: 16)!, String(f[2])))
            case "corrupt": corrupt.append((UInt64(f[1], radix: 16)!, String(f[2])))
            case "mallinfo2":
                for kv in f.dropFirst() {
                    let p = kv.split(separator: "=")
                    mallinfo2[String(p[0])] = UInt64(p[1])!
                }
            default: break
            }
        }
    }
}

/// A TestTargets program, started with posix_spawn (not Foundation.Process, whose child reaper
/// could collect the ptrace stops heapscope waits for), released by closing its stdin.
final class TargetProcess {
    let pid: pid_t
    let dir: String
    let manifestPath: String
    private var stdinFD: Int32
    private var released = false
    private(set) var manifest = Manifest(text: "")
    private(set) var manifestText = ""

    /// `launcher`: run `launcher[0]` with `launcher[1...] + [manifest] + args` instead (it must end
    /// up exec'ing the target in the same process, as `unshare` and `sh -c 'exec ...'` do).
    /// `root`: run it with chroot in that root directory (or with `launcher`, which enters that
    /// root itself); `name` is then its path inside the root, and the manifest is written under
    /// the root's /tmp.
    init(_ name: String, args: [String] = [], env: [String] = [], launcher: [String] = [], root: String? = nil) throws {
        let dir = try temporaryDirectory("test", under: root.map { $0 + "/tmp" } ?? "/tmp")
        let manifestPath = dir + "/manifest"
        self.dir = dir
        self.manifestPath = manifestPath
        let child: Spawned
        var launcher = launcher
        if let root, launcher.isEmpty { launcher = ["/usr/sbin/chroot", root, name] }
        let path = launcher.first ?? (name.hasPrefix("/") ? name : Paths.target(name))
        let visible = root.map { String(manifestPath.dropFirst($0.count)) } ?? manifestPath
        do { child = try Spawned.start(path, Array(launcher.dropFirst()) + [visible] + args,
                                       environment: env.isEmpty ? nil : ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" } + env,
                                       stdout: dir + "/stdout") } catch { throw HarnessError(description: "\(error)") }
        stdinFD = child.stdinFD
        let p = child.pid
        pid = p
        // Wait for the manifest's "end" line.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let s = try? String(contentsOfFile: manifestPath, encoding: .utf8), s.hasSuffix("end\n") {
                manifest = Manifest(text: s)
                manifestText = s
                return
            }
            var st: Int32 = 0
            if waitpid(pid, &st, WNOHANG) == pid { released = true; throw HarnessError(description: "\(name) exited early (status \(st))") }
            usleep(2000)
        }
        throw HarnessError(description: "\(name) wrote no complete manifest")
    }

    /// Close stdin and wait for the exit. Returns (exited normally with 0, stdout).
    @discardableResult
    func release(timeout: TimeInterval = 30) -> (ok: Bool, status: Int32, stdout: String) {
        guard !released else { return (false, -1, "") }
        released = true
        close(stdinFD)
        let deadline = Date().addingTimeInterval(timeout)
        var st: Int32 = 0
        while Date() < deadline {
            if waitpid(pid, &st, WNOHANG) == pid {
                let out = (try? String(contentsOfFile: dir + "/stdout", encoding: .utf8)) ?? ""
                try? FileManager.default.removeItem(atPath: dir)
                let exitedZero = (st & 0x7f) == 0 && ((st >> 8) & 0xff) == 0
                return (exitedZero, st, out)
            }
            usleep(2000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &st, 0)
        return (false, st, "timed out")
    }

    deinit {
        if !released { kill(pid, SIGKILL); var st: Int32 = 0; waitpid(pid, &st, 0); close(stdinFD) }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Send `sig` and wait until the program has rewritten its manifest with `line` in it.
    func signal(_ sig: Int32, thenWaitFor line: String) throws {
        kill(pid, sig)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let s = try? String(contentsOfFile: manifestPath, encoding: .utf8), s.hasSuffix("end\n"),
               s.split(separator: "\n").contains(Substring(line)) {
                manifest = Manifest(text: s)
                manifestText = s
                return
            }
            usleep(2000)
        }
        throw HarnessError(description: "no manifest with \"\(line)\" after signal \(sig)")
    }

    /// One-letter states of every thread (e.g. "S", "R"; "t"/"T" = stopped).
    func threadStates() -> [String] {
        let tids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tids.compactMap { tid in
            guard let s = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
                  let close = s.lastIndex(of: ")") else { return nil }
            return String(s[s.index(close, offsetBy: 2)])
        }
    }
}

/// Run a command, capturing stdout and stderr (through files), with a time limit; `input` is its stdin.
func run(_ path: String, _ args: [String], env: [String: String] = [:], input: String? = nil,
         timeout: TimeInterval = 60) throws -> (status: Int32, out: String, err: String) {
    let dir = try temporaryDirectory("run")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    var stdin = "/dev/null"
    if let input {
        stdin = dir + "/in"
        guard FileManager.default.createFile(atPath: stdin, contents: Data(input.utf8)) else {
            throw HarnessError(description: "cannot write \(stdin)")
        }
    }
    let child = try Spawned.start(path, args, environment: e.map { "\($0.key)=\($0.value)" }, stdinPipe: false,
                                  stdin: stdin, stdout: dir + "/out", stderr: dir + "/err")
    guard let (st, _) = child.wait(timeoutSeconds: timeout) else {
        throw HarnessError(description: "\(path) \(args) did not finish in \(timeout) s")
    }
    let out = (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
    return (exitCode(ofWaitStatus: st), out, err)
}
