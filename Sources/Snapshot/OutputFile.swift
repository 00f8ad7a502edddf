import CShim
import Glibc

/// A file heapscope is about to write (a snapshot, a pprof profile, a watch sample), checked before
/// the target is stopped and written so that nobody else can redirect or read it.
///
/// heapscope often runs as root and is pointed at shared directories (a dump directory, /tmp, a
/// home), so writing follows these rules:
/// - The destination, if it exists, must be a regular file. A symbolic link is refused unless
///   `follow` is given (then the file it names is the destination, checked the same way); devices,
///   FIFOs, sockets and directories are always refused (`-o /dev/null` would replace the device).
/// - The data goes to a temporary file created in the destination's directory with
///   O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, under an unpredictable name, through a descriptor of the
///   directory (so a directory swapped in between steps is not written into); it is fsync'ed,
///   renamed over the destination, and the directory is fsync'ed.
/// - The temporary file is removed on any error, and by a signal handler if SIGINT, SIGTERM, SIGHUP
///   or SIGQUIT ends heapscope while it is written.
public struct OutputFile: Sendable {
    /// The path as given (for messages).
    public let path: String
    /// The directory and name that are written (after following a link, with `follow`).
    public let directory: String
    public let name: String

    /// Check `path` now, before anything is inspected: its directory exists and is writable, and
    /// the destination is absent or a regular file.
    public init(_ path: String, follow: Bool = false) throws(SnapshotError) {
        self.path = path
        guard !path.isEmpty else { throw .refused(path: path, why: "the file name is empty") }
        var target = path
        var st = stat()
        if lstat(target, &st) == 0, st.st_mode & S_IFMT == S_IFLNK {
            guard follow else {
                throw .refused(path: path, why: "it is a symbolic link (heapscope does not write through links; give the real path, or --follow)")
            }
            guard let real = realpath(target, nil) else {
                throw .refused(path: path, why: "it is a symbolic link to a file that cannot be resolved: \(String(cString: strerror(errno)))")
            }
            target = String(cString: real)
            free(real)
        }
        if stat(target, &st) == 0 {
            let kind = st.st_mode & S_IFMT
            guard kind == S_IFREG else {
                throw .refused(path: path, why: "it is \(OutputFile.kindName(kind)), not a regular file (heapscope replaces the file it writes)")
            }
        } else if errno != ENOENT {
            throw .io(path: path, errno: errno, doing: "check")
        }
        if let slash = target.lastIndex(of: "/") {
            directory = slash == target.startIndex ? "/" : String(target[..<slash])
            name = String(target[target.index(after: slash)...])
        } else {
            directory = "."
            name = target
        }
        guard !name.isEmpty, name != ".", name != ".." else { throw .refused(path: path, why: "it names a directory") }
        guard stat(directory, &st) == 0 else { throw .io(path: directory, errno: errno, doing: "use directory") }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw .refused(path: path, why: "\(directory) is not a directory") }
        guard access(directory, W_OK | X_OK) == 0 else { throw .io(path: directory, errno: errno, doing: "write into") }
    }

    static func kindName(_ kind: mode_t) -> String {
        switch kind {
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }

    /// Write `bytes` as described above.
    public func write(_ bytes: [UInt8]) throws(SnapshotError) {
        var failure: SnapshotError?
        bytes.withUnsafeBytes { b in
            do throws(SnapshotError) { try write(b) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(SnapshotError) {
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw .io(path: directory, errno: errno, doing: "open directory") }
        defer { close(dfd) }
        // An unpredictable name: 64 bits from the system's random source (getrandom). The name is
        // registered for removal by the signal handler before the file exists, so that a signal
        // arriving just after the file appears still removes it.
        func shown(_ name: String) -> String { directory == "/" ? "/\(name)" : "\(directory)/\(name)" }
        var fd: Int32 = -1
        var tmp = ""
        var slot: Int32 = -1
        for _ in 0..<16 {
            tmp = ".\(name).tmp-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
            slot = hs_cleanup_add(shown(tmp))
            fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd >= 0 { break }
            let e = errno
            hs_cleanup_remove(slot)   // not ours (or not created)
            errno = e
            if e != EEXIST { break }
        }
        let shown = shown(tmp)
        guard fd >= 0 else { throw .io(path: shown, errno: errno, doing: "create") }
        defer { hs_cleanup_remove(slot) }
        func fail(_ doing: String) -> SnapshotError {
            let e = errno
            close(fd)
            unlinkat(dfd, tmp, 0)
            return .io(path: doing == "rename" ? path : shown, errno: e, doing: doing)
        }
        _ = fchmod(fd, 0o600)   // whatever the umask
        var off = 0
        while off < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 { if errno == EINTR { continue }; throw fail("write") }
            if n == 0 { errno = EIO; throw fail("write") }
            off += n
        }
        if fsync(fd) != 0 { throw fail("write") }
        if renameat(dfd, tmp, dfd, name) != 0 { throw fail("rename") }
        close(fd)
        _ = fsync(dfd)
    }

    /// A directory for files (watch --out): created 0700 if absent; an existing one must be a
    /// directory, not a link to one unless `follow`.
    public static func directory(_ path: String, follow: Bool = false) throws(SnapshotError) {
        var st = stat()
        if lstat(path, &st) != 0 {
            guard errno == ENOENT else { throw .io(path: path, errno: errno, doing: "check") }
            guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw .io(path: path, errno: errno, doing: "create") }
            guard lstat(path, &st) == 0 else { throw .io(path: path, errno: errno, doing: "check") }
        }
        if st.st_mode & S_IFMT == S_IFLNK {
            guard follow else { throw .refused(path: path, why: "it is a symbolic link (give the real path, or --follow)") }
            guard stat(path, &st) == 0 else { throw .io(path: path, errno: errno, doing: "check") }
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw .refused(path: path, why: "it is \(kindName(st.st_mode & S_IFMT)), not a directory")
        }
        guard access(path, W_OK | X_OK) == 0 else { throw .io(path: path, errno: errno, doing: "write into") }
    }
}
