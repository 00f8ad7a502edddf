import Glibc

/// One line of /proc/PID/maps.
public struct Mapping: Sendable, Equatable {
    public var start: UInt64
    public var end: UInt64
    public var readable: Bool
    public var writable: Bool
    public var executable: Bool
    public var shared: Bool
    public var offset: UInt64
    public var inode: UInt64
    public var path: String   // "" for anonymous; "[heap]", "[stack]", "[vdso]", ...
    public var size: UInt64 { end - start }
    public var isAnonymous: Bool { inode == 0 && (path.isEmpty || path.hasPrefix("[anon")) }
    public func contains(_ a: UInt64) -> Bool { a >= start && a < end }
    /// Whether this is the .bss tail of the module mapped just before it: anonymous, writable,
    /// starting where a file mapping ends (the part of .bss past the file's last page).
    public func isBSSTail(after previous: Mapping?) -> Bool {
        guard let p = previous else { return false }
        return isAnonymous && writable && start == p.end && p.path.hasPrefix("/") && !p.shared
    }
}

extension Array where Element == Mapping {
    /// The mapping holding `a`, by binary search (the array in address order, as /proc and core
    /// files list mappings).
    public func mapping(containing a: UInt64) -> Mapping? {
        var lo = 0, hi = count
        while lo < hi { let mid = (lo + hi) / 2; if self[mid].end <= a { lo = mid + 1 } else { hi = mid } }
        return lo < count && self[lo].contains(a) ? self[lo] : nil
    }
}

/// One mapping of /proc/PID/smaps: where, and its resident, proportional and swapped bytes.
public struct SmapsEntry: Sendable, Equatable {
    public var mapping: Mapping
    public var rss: UInt64, pss: UInt64, swap: UInt64
}

/// Small readers for /proc files; every failure names the file.
public enum ProcFS {
    /// /proc/PID/smaps: every mapping with its Rss, Pss and Swap (kB in the file, bytes here).
    public static func smaps(pid: Int32) throws(ProcessError) -> [SmapsEntry] {
        let bytes = try readBytes("/proc/\(pid)/smaps")
        var out: [SmapsEntry] = []
        var lineStart = 0
        func kB(_ line: ArraySlice<UInt8>) -> UInt64 {
            var v: UInt64 = 0
            for b in line where b >= 0x30 && b <= 0x39 { v = v &* 10 &+ UInt64(b - 0x30) }
            return v &* 1024
        }
        for i in 0...bytes.count where i == bytes.count || bytes[i] == 0x0a {
            let line = bytes[lineStart..<i]
            lineStart = i + 1
            guard let first = line.first else { continue }
            let isHex = (first >= 0x30 && first <= 0x39) || (first >= 0x61 && first <= 0x66)
            if isHex, line.contains(0x2d), let m = parseMaps(Array(line) + [0x0a]).first {
                out.append(SmapsEntry(mapping: m, rss: 0, pss: 0, swap: 0))
            } else if !out.isEmpty {
                if line.starts(with: "Rss:".utf8) { out[out.count - 1].rss = kB(line) }
                else if line.starts(with: "Pss:".utf8) { out[out.count - 1].pss = kB(line) }
                else if line.starts(with: "Swap:".utf8) { out[out.count - 1].swap = kB(line) }
            }
        }
        return out
    }

    /// The ELF class of a file (1: 32-bit, 2: 64-bit), nil if it is not an ELF file.
    public static func elfClass(_ path: String) -> UInt8? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var h = [UInt8](repeating: 0, count: 5)
        guard read(fd, &h, 5) == 5, h[0..<4] == [0x7f, 0x45, 0x4c, 0x46] else { return nil }
        return h[4]
    }

    /// heapscope's own resident memory and its peak, in KiB (VmRSS and VmHWM of this process:
    /// unlike ru_maxrss, the peak does not inherit the parent's through vfork+exec); 0 if unreadable.
    public static func ownMemoryKilobytes() -> (rss: Int, peak: Int) {
        guard let status = try? readFile("/proc/self/status") else { return (0, 0) }
        var rss = 0, peak = 0
        for line in status.split(separator: "\n") {
            if line.hasPrefix("VmRSS:") { rss = Int(line.dropFirst(6).filter(\.isNumber)) ?? 0 }
            if line.hasPrefix("VmHWM:") { peak = Int(line.dropFirst(6).filter(\.isNumber)) ?? 0 }
        }
        return (rss, peak)
    }

    public static func readFile(_ path: String) throws(ProcessError) -> String {
        String(decoding: try readBytes(path), as: UTF8.self)
    }

    public static func readBytes(_ path: String) throws(ProcessError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .system(call: "open", subject: path, errno: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .system(call: "read", subject: path, errno: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    /// True if the process is gone or a zombie (it has exited; only its parent's wait is missing).
    public static func hasExited(pid: Int32) -> Bool {
        guard let st = try? status(pid: pid) else { return true }
        return st["State"]?.hasPrefix("Z") ?? true || st["State"]?.hasPrefix("X") ?? false
    }

    public static func exists(pid: Int32) -> Bool {
        var st = stat()
        return stat("/proc/\(pid)", &st) == 0
    }

    /// /proc/PID/status as a dictionary of "Key" -> "value".
    public static func status(pid: Int32) throws(ProcessError) -> [String: String] {
        let text: String
        do { text = try readFile("/proc/\(pid)/status") } catch {
            if case .system(_, _, let e) = error, e == ENOENT || e == ESRCH { throw .noSuchProcess(pid: pid) }
            throw error
        }
        var d: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            d[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: " \t")
        }
        return d
    }

    public static func threadIDs(pid: Int32) throws(ProcessError) -> [Int32] {
        guard let dir = opendir("/proc/\(pid)/task") else {
            if errno == ENOENT { throw .noSuchProcess(pid: pid) }
            throw .system(call: "opendir", subject: "/proc/\(pid)/task", errno: errno)
        }
        defer { closedir(dir) }
        var tids: [Int32] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let t = Int32(name) { tids.append(t) }
        }
        return tids.sorted()
    }

    /// /proc/PID/maps, parsed from its bytes (a process with 60,000 mappings has 5 MB of them,
    /// read while the target is stopped).
    public static func maps(pid: Int32) throws(ProcessError) -> [Mapping] {
        let bytes: [UInt8]
        do { bytes = try readBytes("/proc/\(pid)/maps") } catch {
            if case .system(_, _, let e) = error, e == ENOENT || e == ESRCH { throw .noSuchProcess(pid: pid) }
            throw error
        }
        return parseMaps(bytes)
    }

    /// Lines "start-end perms offset dev inode [path]"; malformed lines are skipped.
    static func parseMaps(_ bytes: [UInt8]) -> [Mapping] {
        var result: [Mapping] = []
        var lastPath = ""
        bytes.withUnsafeBufferPointer { b in
            var i = 0
            let n = b.count
            @inline(__always) func hexNumber() -> UInt64? {
                var v: UInt64 = 0, digits = 0
                while i < n {
                    let c = b[i]
                    let d: UInt64
                    switch c {
                    case 0x30...0x39: d = UInt64(c - 0x30)
                    case 0x61...0x66: d = UInt64(c - 0x61 + 10)
                    default: return digits > 0 && digits <= 16 ? v : nil
                    }
                    v = v << 4 | d; digits += 1; i += 1
                }
                return digits > 0 && digits <= 16 ? v : nil
            }
            @inline(__always) func skip(_ c: UInt8) -> Bool { if i < n && b[i] == c { i += 1; return true }; return false }
            @inline(__always) func skipSpaces() { while i < n && b[i] == 0x20 { i += 1 } }
            @inline(__always) func skipWord() { while i < n && b[i] != 0x20 && b[i] != 0x0a { i += 1 } }
            while i < n {
                defer { while i < n && b[i] != 0x0a { i += 1 }; i += 1 }
                guard let start = hexNumber(), skip(0x2d), let end = hexNumber(), skip(0x20), i + 4 <= n else { continue }
                let r = b[i] == 0x72, w = b[i + 1] == 0x77, x = b[i + 2] == 0x78, sh = b[i + 3] == 0x73
                i += 4
                skipSpaces()
                guard let offset = hexNumber() else { continue }
                skipSpaces(); skipWord(); skipSpaces()   // dev
                var inode: UInt64 = 0
                while i < n && b[i] >= 0x30 && b[i] <= 0x39 { inode = inode &* 10 &+ UInt64(b[i] - 0x30); i += 1 }
                skipSpaces()
                var e = i
                while e < n && b[e] != 0x0a { e += 1 }
                var path = ""
                if e > i {
                    // Consecutive mappings of one file share one String.
                    let raw = UnsafeBufferPointer(rebasing: b[i..<e])
                    if lastPath.utf8.elementsEqual(raw) { path = lastPath } else { path = String(decoding: raw, as: UTF8.self); lastPath = path }
                }
                result.append(Mapping(start: start, end: end, readable: r, writable: w, executable: x, shared: sh,
                                      offset: offset, inode: inode, path: path))
                i = e
            }
        }
        return result
    }

    /// Why `pid` is not a user process heapscope can inspect (a kernel thread, heapscope itself),
    /// or nil.
    public static func notAProcess(_ pid: Int32) -> String? {
        if let st = try? status(pid: pid), let tgid = st["Tgid"].flatMap({ Int32($0) }), tgid == getpid() {
            return tgid == pid ? "heapscope itself" : "a thread of heapscope itself"
        }
        // PF_KTHREAD (0x00200000) in the flags, field 9 of /proc/PID/stat.
        guard let s = try? readFile("/proc/\(pid)/stat"), let close = s.lastIndex(of: ")") else { return nil }
        let f = s[s.index(after: close)...].split(separator: " ")
        if f.count > 6, let flags = UInt64(f[6]), flags & 0x0020_0000 != 0 {
            let name = s.firstIndex(of: "(").map { String(s[s.index(after: $0)..<close]) } ?? "?"
            return "a kernel thread (\(name))"
        }
        return nil
    }

    /// The id through which the process's memory and files are reached: `pid` itself, or, when
    /// its leader thread has exited (pthread_exit in main: a zombie whose /proc/PID/maps is empty
    /// and whose memory cannot be read through it) while other threads live, one of those.
    public static func accessPid(_ pid: Int32) -> Int32 {
        guard threadState(pid: pid, tid: pid) == "Z", let tids = try? threadIDs(pid: pid) else { return pid }
        return tids.first { $0 != pid && !["Z", "X", "?"].contains(threadState(pid: pid, tid: $0)) } ?? pid
    }

    /// The process (and its name) tracing thread `tid` of `pid`, from TracerPid; nil if none.
    public static func tracer(pid: Int32, tid: Int32) -> (pid: Int32, name: String)? {
        guard let text = try? readFile("/proc/\(pid)/task/\(tid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("TracerPid:") {
            guard let t = Int32(line.dropFirst(10).trimmingCharacters(in: " \t")), t != 0 else { return nil }
            // TracerPid is the tracing thread; name its process.
            let tst = try? status(pid: t)
            let tgid = tst?["Tgid"].flatMap { Int32($0) } ?? t
            return (tgid, (try? status(pid: tgid))?["Name"] ?? tst?["Name"] ?? "?")
        }
        return nil
    }

    /// The kernel function a thread sleeps in (/proc/PID/task/TID/wchan), if it tells.
    public static func wchan(pid: Int32, tid: Int32) -> String? {
        guard let w = try? readFile("/proc/\(pid)/task/\(tid)/wchan"), !w.isEmpty, w != "0" else { return nil }
        return w
    }

    /// One-letter state from /proc/PID/task/TID/stat ("R", "S", "D", "T", "t", "Z", ...).
    public static func threadState(pid: Int32, tid: Int32) -> String {
        guard let s = try? readFile("/proc/\(pid)/task/\(tid)/stat"), let close = s.lastIndex(of: ")") else { return "?" }
        return String(s[s.index(after: close)...].trimmingCharacters(in: " ").prefix(1))
    }

    /// Process start time in clock ticks since boot (field 22 of /proc/PID/stat).
    public static func startTime(pid: Int32) -> UInt64? {
        guard let s = try? readFile("/proc/\(pid)/stat"), let close = s.lastIndex(of: ")") else { return nil }
        let fields = s[s.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    public static func exePath(pid: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(pid)/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func yamaScope() -> Int? {
        guard let s = try? readFile("/proc/sys/kernel/yama/ptrace_scope") else { return nil }
        return Int(s.trimmingCharacters(in: " \n"))
    }

    public static func selfHasCapability(_ bit: Int) -> Bool {
        guard let st = try? status(pid: getpid()), let eff = st["CapEff"], let v = UInt64(eff, radix: 16) else { return geteuid() == 0 }
        return v & (1 << UInt64(bit)) != 0
    }

    /// Path through which the target's view of a mapped file can be opened (works across mount
    /// namespaces and for deleted files).
    public static func mappedFilePath(pid: Int32, mapping: Mapping) -> String {
        let mf = "/proc/\(pid)/map_files/\(String(mapping.start, radix: 16))-\(String(mapping.end, radix: 16))"
        if access(mf, R_OK) == 0 { return mf }
        let root = "/proc/\(pid)/root\(mapping.path)"
        if access(root, R_OK) == 0 { return root }
        return mapping.path
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var s = self[...]
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
extension String {
    func trimmingCharacters(in set: String) -> String { self[...].trimmingCharacters(in: set) }
}
