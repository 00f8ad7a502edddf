import Foundation
import Glibc

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

    init(_ name: String, args: [String] = [], env: [String] = []) throws {
        var tmpl = Array("/tmp/heapscope-test-XXXXXX".utf8CString)
        guard mkdtemp(&tmpl) != nil else { throw HarnessError(description: "mkdtemp failed") }
        dir = String(cString: tmpl)
        manifestPath = dir + "/manifest"
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw HarnessError(description: "pipe failed") }
        stdinFD = fds[1]
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir + "/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let path = Paths.target(name)
        let argv = [path, manifestPath] + args
        var cargs = argv.map { strdup($0) } + [nil]
        let envAll = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" } + env
        var cenv = envAll.map { strdup($0) } + [nil]
        // Test threads (dispatch workers) block signals, and a mask survives exec: give the target
        // an empty mask and default dispositions, as a shell would.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        var empty = sigset_t(), all = sigset_t()
        sigemptyset(&empty); sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var p: pid_t = 0
        let r = posix_spawn(&p, path, &actions, &attr, &cargs, &cenv)
        posix_spawnattr_destroy(&attr)
        posix_spawn_file_actions_destroy(&actions)
        cargs.forEach { free($0) }; cenv.forEach { free($0) }
        close(fds[0])
        guard r == 0 else { close(stdinFD); throw HarnessError(description: "posix_spawn \(path): \(String(cString: strerror(r)))") }
        pid = p
        // Wait for the manifest's "end" line.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let s = try? String(contentsOfFile: manifestPath, encoding: .utf8), s.hasSuffix("end\n") {
                manifest = Manifest(text: s)
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

/// Run a command, capturing stdout and stderr (through files), with a time limit. posix_spawn only.
func run(_ path: String, _ args: [String], env: [String: String] = [:], timeout: TimeInterval = 60) throws -> (status: Int32, out: String, err: String) {
    var tmpl = Array("/tmp/heapscope-run-XXXXXX".utf8CString)
    guard mkdtemp(&tmpl) != nil else { throw HarnessError(description: "mkdtemp failed") }
    let dir = String(cString: tmpl)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, dir + "/out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, dir + "/err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    var cargs = ([path] + args).map { strdup($0) } + [nil]
    var cenv = e.map { strdup("\($0.key)=\($0.value)") } + [nil]
    var pid: pid_t = 0
    let r = posix_spawn(&pid, path, &actions, nil, &cargs, &cenv)
    posix_spawn_file_actions_destroy(&actions)
    cargs.forEach { free($0) }; cenv.forEach { free($0) }
    guard r == 0 else { throw HarnessError(description: "posix_spawn \(path): \(String(cString: strerror(r)))") }
    let deadline = Date().addingTimeInterval(timeout)
    var st: Int32 = 0
    while waitpid(pid, &st, WNOHANG) != pid {
        if Date() > deadline {
            kill(pid, SIGKILL); waitpid(pid, &st, 0)
            throw HarnessError(description: "\(path) \(args) did not finish in \(timeout) s")
        }
        usleep(1000)
    }
    let out = (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
    let status: Int32 = (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f)
    return (status, out, err)
}
