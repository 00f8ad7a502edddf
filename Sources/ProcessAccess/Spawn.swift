import Glibc

/// Starts a program with posix_spawn: empty signal mask and default dispositions (as a shell
/// would; a mask survives exec), stdin from a pipe the caller holds (closing it releases the
/// program), stdout and stderr to files or /dev/null. Used by the tests and the benchmark.
public struct Spawned {
    public let pid: pid_t
    /// Write end of the child's stdin, or -1.
    public let stdinFD: Int32

    /// Without `stdinPipe`, stdin is read from the file `stdin`.
    public static func start(_ path: String, _ args: [String], environment: [String]? = nil, stdinPipe: Bool = true,
                             stdin: String = "/dev/null", stdout: String = "/dev/null",
                             stderr: String = "/dev/null") throws(ProcessError) -> Spawned {
        var fds: [Int32] = [-1, -1]
        if stdinPipe {
            guard pipe(&fds) == 0 else { throw .system(call: "pipe", subject: path, errno: errno) }
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if stdinPipe { posix_spawn_file_actions_adddup2(&actions, fds[0], 0) }
        else { posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0) }
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t(), all = sigset_t()
        sigemptyset(&empty); sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var cargs: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var pid: pid_t = 0
        let r: Int32
        if let env = environment {
            var cenv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
            defer { cenv.forEach { free($0) } }
            r = posix_spawn(&pid, path, &actions, &attr, &cargs, &cenv)
        } else {
            r = posix_spawn(&pid, path, &actions, &attr, &cargs, environ)
        }
        if stdinPipe { close(fds[0]) }
        guard r == 0 else {
            if stdinPipe { close(fds[1]) }
            throw .system(call: "posix_spawn", subject: path, errno: r)
        }
        return Spawned(pid: pid, stdinFD: stdinPipe ? fds[1] : -1)
    }

    /// Wait for the child (polling, with a time limit). Returns the raw wait status and resource
    /// usage, or nil on time-out (the child is then killed).
    public func wait(timeoutSeconds: Double) -> (status: Int32, usage: rusage)? {
        let deadline = hs_now() + timeoutSeconds
        var st: Int32 = 0
        var ru = rusage()
        while true {
            let r = wait4(pid, &st, WNOHANG, &ru)
            if r == pid { return (st, ru) }
            if r < 0 && errno != EINTR { return nil }
            if hs_now() > deadline { kill(pid, SIGKILL); _ = wait4(pid, &st, 0, &ru); return nil }
            usleep(500)
        }
    }

    /// Close the child's stdin (the TestTargets programs exit then).
    public func closeStdin() { if stdinFD >= 0 { close(stdinFD) } }
}

private func hs_now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Exit code of a wait status, or 128+signal.
public func exitCode(ofWaitStatus st: Int32) -> Int32 { (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f) }
