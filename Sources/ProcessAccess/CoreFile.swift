import Glibc

/// An ELF core file of an x86-64 Linux process (from gcore, the kernel, systemd-coredump), read
/// as a source of the same facts a live process gives: memory (PT_LOAD), threads and their
/// registers (NT_PRSTATUS), mapped files (NT_FILE), the auxiliary vector (NT_AUXV) and the
/// command (NT_PRPSINFO).
///
/// Every field of the file is checked before use (a core is outside input: truncated, damaged or
/// hostile files give `CoreError`, never a trap). Memory is read with pread on demand, not mapped:
/// a file truncated while it is read gives short reads, not SIGBUS.
/// Segments the core does not hold (the kernel leaves out read-only file-backed mappings: code,
/// .rodata) are read from the mapped file when it is there and its build-id matches the one the
/// core recorded, where the core recorded one.
public final class CoreFile: @unchecked Sendable {
    public let path: String
    let fd: Int32
    public let fileSize: UInt64

    /// One PT_LOAD: `memsz` bytes at `vaddr`, the first `filesz` of them at `offset` in the file.
    public struct Segment: Sendable {
        public var vaddr: UInt64
        public var memsz: UInt64
        public var offset: UInt64
        public var filesz: UInt64
        public var flags: UInt32
        public var end: UInt64 { vaddr + memsz }
    }
    /// One NT_FILE entry: [start, end) maps `path` from byte `fileOffset`.
    public struct MappedFile: Sendable {
        public var start: UInt64
        public var end: UInt64
        public var fileOffset: UInt64
        public var path: String
    }

    /// In address order, not overlapping.
    public private(set) var segments: [Segment] = []
    public private(set) var files: [MappedFile] = []
    public private(set) var threads: [StoppedThread] = []
    public private(set) var auxv: [(type: UInt64, value: UInt64)] = []
    /// From NT_PRPSINFO (0 when absent) or the first thread.
    public private(set) var pid: Int32 = 0
    /// The command's name (16 characters at most) and its arguments (80), from NT_PRPSINFO.
    public private(set) var command = ""
    public private(set) var arguments = ""
    /// The signal that made the core (0 for gcore), from the first NT_PRSTATUS.
    public private(set) var signal: Int32 = 0
    /// Files read for segments the core left out, by path: nil when it cannot be used.
    private var fileFDs: [String: Int32?] = [:]
    private var fdLock = pthread_mutex_t()

    public enum CoreError: Error, CustomStringConvertible, Sendable {
        case notCore(path: String, why: String)
        case unreadable(path: String, errno: Int32)
        case damaged(path: String, why: String)
        public var description: String {
            switch self {
            case .notCore(let p, let why): return "\(p) is not a core file: \(why)"
            case .unreadable(let p, let e): return "cannot read \(p): \(String(cString: strerror(e)))"
            case .damaged(let p, let why): return "core file \(p) is damaged: \(why)"
            }
        }
    }

    /// Whether `path` is an ELF core file (by its contents, not its name).
    public static func isCore(path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return false }
        var h = [UInt8](repeating: 0, count: 18)
        guard pread(fd, &h, 18, 0) == 18, h[0..<4] == [0x7f, 0x45, 0x4c, 0x46] else { return false }
        return UInt16(h[16]) | UInt16(h[17]) << 8 == 4   // ET_CORE
    }

    public init(path: String) throws(CoreError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .unreadable(path: path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { let e = errno; close(fd); throw .unreadable(path: path, errno: e) }
        guard st.st_mode & S_IFMT == S_IFREG else { close(fd); throw .notCore(path: path, why: "not a regular file") }
        self.fd = fd
        fileSize = UInt64(max(0, st.st_size))
        pthread_mutex_init(&fdLock, nil)
        try parse()   // on failure deinit closes fd
    }

    deinit {
        close(fd)
        for case let f? in fileFDs.values { close(f) }
    }

    // MARK: parsing

    private func bytes(at offset: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0, offset <= fileSize, UInt64(count) <= fileSize - offset else { return nil }
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { b -> Int in
            var done = 0
            while done < count {
                let r = pread(fd, b.baseAddress! + done, count - done, off_t(Int64(offset) + Int64(done)))
                if r < 0 && errno == EINTR { continue }
                if r <= 0 { break }
                done += r
            }
            return done
        }
        return n == count ? out : nil
    }

    private func parse() throws(CoreError) {
        guard let h = bytes(at: 0, count: 64) else { throw .notCore(path: path, why: "shorter than an ELF header") }
        guard h[0..<4] == [0x7f, 0x45, 0x4c, 0x46] else { throw .notCore(path: path, why: "no ELF magic") }
        guard h[4] == 2, h[5] == 1 else {
            throw .notCore(path: path, why: "not a 64-bit little-endian ELF file; heapscope reads x86-64 cores")
        }
        guard h.u16(16) == 4 else { throw .notCore(path: path, why: "an ELF file of type \(h.u16(16)), not ET_CORE (4)") }
        guard h.u16(18) == 62 else { throw .notCore(path: path, why: "a core of machine \(h.u16(18)), not x86-64 (62)") }
        let phnum = Int(h.u16(56)), phoff = h.u64(32)
        guard h.u16(54) >= 56 else { throw .damaged(path: path, why: "program header entries of \(h.u16(54)) bytes") }
        guard let headers = ELFNotes.programHeaders(read: { self.bytes(at: $0, count: $1) }), !headers.isEmpty else {
            throw .damaged(path: path, why: "its \(phnum) program headers at offset \(phoff) are past the end of the file (\(fileSize) bytes)")
        }
        var loads: [Segment] = []
        var notes: [(UInt64, UInt64)] = []
        for ph in headers {
            if ph.type == 4 { notes.append((ph.offset, ph.filesz)) }   // PT_NOTE
            guard ph.type == 1, ph.memsz > 0 else { continue }         // PT_LOAD
            guard ph.vaddr &+ ph.memsz > ph.vaddr else { continue }    // wraps: not a mapping
            // What the file really holds of it (a truncated core holds less).
            let written = min(ph.filesz, ph.memsz)
            let held = ph.offset >= fileSize ? 0 : min(written, fileSize - ph.offset)
            truncatedBytes &+= written - held
            loads.append(Segment(vaddr: ph.vaddr, memsz: ph.memsz, offset: ph.offset, filesz: held, flags: ph.flags))
        }
        loads.sort { $0.vaddr < $1.vaddr }
        for s in loads where segments.last.map({ $0.end <= s.vaddr }) ?? true { segments.append(s) }
        guard !notes.isEmpty else { throw .damaged(path: path, why: "no PT_NOTE segment (no threads, no mapped files)") }
        for (offset, size) in notes {
            guard size <= 64 << 20, let data = bytes(at: offset, count: Int(size)) else {
                throw .damaged(path: path, why: "its notes (\(size) bytes at offset \(offset)) are past the end of the file")
            }
            readNotes(data)
        }
        if pid == 0, let t = threads.first { pid = t.tid }
        guard !threads.isEmpty else { throw .damaged(path: path, why: "no thread (NT_PRSTATUS) in its notes") }
        maps = makeMaps()
    }

    private func readNotes(_ d: [UInt8]) {
        for n in ELFNotes.notes(d) where n.name.elementsEqual("CORE".utf8) {
            let desc = Array(n.desc)
            switch n.type {
            case 1: prstatus(desc)                              // NT_PRSTATUS
            case 3: prpsinfo(desc)                              // NT_PRPSINFO
            case 6:                                             // NT_AUXV
                var k = 0
                while k + 16 <= desc.count { auxv.append((desc.u64(k), desc.u64(k + 8))); k += 16 }
            case 0x4649_4c45: mappedFiles(desc)                 // NT_FILE
            default: break
            }
        }
    }

    /// struct elf_prstatus (x86-64): pr_cursig at 12, pr_pid at 32, pr_reg (27 words) at 112.
    private func prstatus(_ d: [UInt8]) {
        guard d.count >= 112 + 27 * 8 else { return }
        if threads.isEmpty { signal = Int32(d.u16(12)) }
        var regs = user_regs_struct()
        withUnsafeMutableBytes(of: &regs) { r in
            d[112..<112 + 27 * 8].withUnsafeBytes { r.copyMemory(from: $0) }
        }
        threads.append(StoppedThread(tid: Int32(bitPattern: d.u32(32)), regs: regs, pendingSignal: 0))
    }

    /// struct elf_prpsinfo (x86-64): pr_pid at 24, pr_fname[16] at 40, pr_psargs[80] at 56.
    private func prpsinfo(_ d: [UInt8]) {
        guard d.count >= 136 else { return }
        pid = Int32(bitPattern: d.u32(24))
        func text(_ r: Range<Int>) -> String { String(decoding: d[r].prefix { $0 != 0 }, as: UTF8.self) }
        command = text(40..<56)
        arguments = text(56..<136)
    }

    /// NT_FILE: count, page size, count × (start, end, page offset), then count NUL-ended names.
    private func mappedFiles(_ d: [UInt8]) {
        guard d.count >= 16 else { return }
        let count = d.u64(0), page = d.u64(8)
        guard count <= UInt64(d.count - 16) / 24, page > 0, page <= 1 << 30 else { return }
        var names = 16 + Int(count) * 24
        for i in 0..<Int(count) {
            let e = 16 + i * 24
            guard names < d.count else { return }
            let end = d[names...].firstIndex(of: 0) ?? d.count
            let name = String(decoding: d[names..<end], as: UTF8.self)
            names = end + 1
            let (off, o) = d.u64(e + 16).multipliedReportingOverflow(by: page)
            guard !o, d.u64(e) < d.u64(e + 8) else { continue }
            files.append(MappedFile(start: d.u64(e), end: d.u64(e + 8), fileOffset: off, path: name))
        }
        files.sort { $0.start < $1.start }
    }

    // MARK: what the process looked like

    /// The value of auxiliary-vector entry `type` (AT_*), if recorded.
    public func aux(_ type: UInt64) -> UInt64? { auxv.first { $0.type == type }?.value }

    /// The process's mappings, as /proc/PID/maps would have listed them: one per PT_LOAD, with
    /// the file NT_FILE names for it. Names the kernel gives ([stack], [vdso], [vvar],
    /// [vsyscall]) are given back from the registers and the auxiliary vector; [heap] is the
    /// first anonymous writable mapping past the executable within the brk randomisation range.
    public private(set) var maps: [Mapping] = []
    /// Bytes of segments the program headers say the file holds but it does not (a core cut
    /// short: a size limit, a full disk, a copy cut off).
    public private(set) var truncatedBytes: UInt64 = 0

    private func makeMaps() -> [Mapping] {
        var out: [Mapping] = []
        var fi = 0
        for s in segments {
            while fi < files.count && files[fi].end <= s.vaddr { fi += 1 }
            var m = Mapping(start: s.vaddr, end: s.end, readable: s.flags & 4 != 0, writable: s.flags & 2 != 0,
                            executable: s.flags & 1 != 0, shared: false, offset: 0, inode: 0, path: "")
            if fi < files.count, files[fi].start <= s.vaddr, files[fi].end >= s.end {
                let f = files[fi]
                m.path = f.path
                m.offset = f.fileOffset &+ (s.vaddr - f.start)
                m.inode = 1   // a file (the core does not record inodes)
            }
            out.append(m)
        }
        // Mapped files the core has no segment for (gcore leaves out what it does not dump):
        // their permissions from the file's own program headers.
        for f in files where !segments.contains(where: { $0.vaddr < f.end && f.start < $0.end }) {
            let flags = fileSegmentFlags(f) ?? 4
            out.append(Mapping(start: f.start, end: f.end, readable: flags & 4 != 0, writable: flags & 2 != 0, executable: flags & 1 != 0,
                               shared: false, offset: f.fileOffset, inode: 1, path: f.path))
        }
        out.sort { $0.start < $1.start }
        // The kernel's names.
        let mainThread = threads.first { $0.tid == pid } ?? threads.first
        if let sp = mainThread?.stackPointer, let i = out.firstIndex(where: { $0.contains(sp) && $0.inode == 0 }) { out[i].path = "[stack]" }
        if let vdso = aux(33 /* AT_SYSINFO_EHDR */), let i = out.firstIndex(where: { $0.start == vdso && $0.inode == 0 }) {
            out[i].path = "[vdso]"
            var k = i - 1
            while k >= 0, out[k].inode == 0, out[k].end == out[k + 1].start, !out[k].writable, !out[k].executable {
                out[k].path = "[vvar]"; k -= 1
            }
        }
        if let i = out.firstIndex(where: { $0.start == 0xffff_ffff_ff60_0000 }) { out[i].path = "[vsyscall]" }
        if let exe = executable, let last = out.lastIndex(where: { $0.path == exe }) {
            var k = last + 1
            if k < out.count, out[k].isBSSTail(after: out[last]) { k += 1 }
            if k < out.count, out[k].inode == 0, out[k].path.isEmpty, out[k].writable, out[k].start - out[last].end <= (32 << 20) + (1 << 20) {
                out[k].path = "[heap]"
            }
        }
        return out
    }

    /// The executable's path: the mapped file that holds the entry point (AT_ENTRY).
    public var executable: String? {
        if let entry = aux(9 /* AT_ENTRY */), let f = files.first(where: { entry >= $0.start && entry < $0.end }) { return f.path }
        return files.first?.path
    }

    // MARK: memory

    /// The p_flags of the loadable segment of `f`'s file that it maps (nil if the file cannot be
    /// read or matched).
    private func fileSegmentFlags(_ f: MappedFile) -> UInt32? {
        guard let (fd, _) = fileBacking(f.start) else { return nil }
        return ELFNotes.programHeaders(read: { ELFNotes.pread(fd, $0, $1) })?
            .first { $0.type == 1 && $0.offset & ~4095 == f.fileOffset }?.flags
    }

    /// Read up to `count` bytes at `address` into `dst`: from the core where it holds them, else
    /// from the mapped file (segments the core left out). Returns bytes read (short at the first
    /// byte neither holds).
    public func read(_ address: UInt64, into dst: UnsafeMutableRawPointer, count: Int) -> Int {
        var done = 0
        while done < count {
            let a = address &+ UInt64(done)
            guard a >= address else { break }
            guard let s = segment(containing: a) else {
                // A mapped file the core holds no segment for.
                guard let f = files.first(where: { a >= $0.start && a < $0.end }), let (ffd, off) = fileBacking(a) else { break }
                let want = Int(min(UInt64(count - done), f.end - a))
                let got = preadAll(ffd, dst + done, want, off)
                done += got
                if got < want { break }
                continue
            }
            let inSeg = a - s.vaddr
            let want = Int(min(UInt64(count - done), s.memsz - inSeg))
            var got = 0
            if inSeg < s.filesz {
                let n = Int(min(UInt64(want), s.filesz - inSeg))
                got = preadAll(fd, dst + done, n, s.offset + inSeg)
            } else if let (ffd, off) = fileBacking(a) {
                got = preadAll(ffd, dst + done, want, off)
            }
            done += got
            if got < want { break }
        }
        return done
    }

    private func preadAll(_ fd: Int32, _ dst: UnsafeMutableRawPointer, _ n: Int, _ offset: UInt64) -> Int {
        guard offset <= UInt64(Int64.max) else { return 0 }
        var done = 0
        while done < n {
            let r = pread(fd, dst + done, n - done, off_t(Int64(offset) + Int64(done)))
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { break }
            done += r
        }
        return done
    }

    /// The parts of [start, end) the core holds (whole pages).
    public func heldRuns(start: UInt64, end: UInt64) -> [(start: UInt64, end: UInt64)] {
        var out: [(start: UInt64, end: UInt64)] = []
        var lo = 0, hi = segments.count
        while lo < hi { let mid = (lo + hi) / 2; if segments[mid].end <= start { lo = mid + 1 } else { hi = mid } }
        while lo < segments.count && segments[lo].vaddr < end {
            let s = segments[lo]
            let a = (max(s.vaddr, start) + 4095) & ~4095, b = min(s.vaddr + s.filesz, end) & ~4095
            if b > a { out.append((a, b)) }
            lo += 1
        }
        return out
    }

    /// The parts of [start, end) that can be read: what the core holds, and what mapped files
    /// that match hold (up to their ends), in address order. A copy is made only of these, so a
    /// core whose headers claim more memory than it holds never makes heapscope allocate it.
    public func readableRuns(start: UInt64, end: UInt64) -> [(start: UInt64, end: UInt64)] {
        guard start < end else { return [] }
        var runs: [(start: UInt64, end: UInt64)] = []
        var lo = 0, hi = segments.count
        while lo < hi { let mid = (lo + hi) / 2; if segments[mid].end <= start { lo = mid + 1 } else { hi = mid } }
        while lo < segments.count && segments[lo].vaddr < end {
            let s = segments[lo]
            let a = max(s.vaddr, start), b = min(s.vaddr + s.filesz, end)
            if b > a { runs.append((a, b)) }
            lo += 1
        }
        for f in files where f.start < end && f.end > start {
            guard let (fd, _) = fileBacking(f.start) else { continue }
            var st = stat()
            guard fstat(fd, &st) == 0, UInt64(max(0, st.st_size)) > f.fileOffset else { continue }
            let held = UInt64(st.st_size) - f.fileOffset
            let a = max(f.start, start), b = min(f.end, end, f.start &+ held < f.start ? f.end : f.start + held)
            if b > a { runs.append((a, b)) }
        }
        runs.sort { $0.start < $1.start }
        var merged: [(start: UInt64, end: UInt64)] = []
        for r in runs {
            if let last = merged.last, r.start <= last.end { merged[merged.count - 1].end = max(last.end, r.end) } else { merged.append(r) }
        }
        return merged
    }

    func segment(containing a: UInt64) -> Segment? {
        var lo = 0, hi = segments.count
        while lo < hi { let mid = (lo + hi) / 2; if segments[mid].end <= a { lo = mid + 1 } else { hi = mid } }
        return lo < segments.count && segments[lo].vaddr <= a ? segments[lo] : nil
    }

    /// The file and offset holding `a` when the core left its page out.
    private func fileBacking(_ a: UInt64) -> (Int32, UInt64)? {
        guard let f = files.first(where: { a >= $0.start && a < $0.end }) else { return nil }
        pthread_mutex_lock(&fdLock)
        let known = fileFDs[f.path]
        pthread_mutex_unlock(&fdLock)
        let fd: Int32?
        if let known { fd = known } else {
            // (opened outside the lock: matching reads the core)
            let opened = openMatching(f.path)
            pthread_mutex_lock(&fdLock)
            if let raced = fileFDs[f.path] {
                if let o = opened { close(o) }
                fd = raced
            } else {
                fileFDs[f.path] = opened
                fd = opened
            }
            pthread_mutex_unlock(&fdLock)
        }
        guard let fd else { return nil }
        return (fd, f.fileOffset &+ (a - f.start))
    }

    /// `path` opened, if it is a regular file whose build-id is the one the core recorded for it
    /// (read from the ELF headers the core holds); a file the core recorded no build-id for is
    /// taken as it is.
    private func openMatching(_ path: String) -> Int32? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { close(fd); return nil }
        if let want = recordedBuildID(path), ELFNotes.buildID(fd: fd) != want { close(fd); return nil }
        return fd
    }

    /// The build-id of the file mapped from `path`, read from its ELF headers in the core.
    public func recordedBuildID(_ path: String) -> [UInt8]? {
        guard let first = files.first(where: { $0.path == path && $0.fileOffset == 0 }),
              let s = segment(containing: first.start), first.start - s.vaddr < s.filesz else { return nil }
        let base = first.start
        return ELFNotes.buildID { off, n in
            // Only what the core holds (reading a left-out part would open this very file).
            let a = base &+ off
            guard a >= base, let s = self.segment(containing: a), a - s.vaddr < s.filesz, UInt64(n) <= s.filesz - (a - s.vaddr) else { return nil }
            var b = [UInt8](repeating: 0, count: n)
            let got = b.withUnsafeMutableBytes { self.preadAll(self.fd, $0.baseAddress!, n, s.offset + (a - s.vaddr)) }
            return got == n ? b : nil
        }
    }
}

/// The GNU build-id note of an ELF image, read through `read(offset, count)` (bounded: a damaged
/// image gives nil).
public enum ELFNotes {
    /// One program header of a 64-bit ELF file.
    public struct ProgramHeader: Sendable {
        public var type: UInt32, flags: UInt32, offset: UInt64, vaddr: UInt64, filesz: UInt64, memsz: UInt64
    }

    /// The program headers of a 64-bit little-endian ELF image read through `read(offset, count)`;
    /// nil when the header or the table cannot be read.
    public static func programHeaders(read: (UInt64, Int) -> [UInt8]?) -> [ProgramHeader]? {
        guard let h = read(0, 64), h[0..<4] == [0x7f, 0x45, 0x4c, 0x46], h[4] == 2 else { return nil }
        let phoff = h.u64(32), size = Int(h.u16(54)), count = Int(h.u16(56))
        guard size >= 56, let t = read(phoff, count * size) else { return nil }
        return (0..<count).map { i in
            let p = i * size
            return ProgramHeader(type: t.u32(p), flags: t.u32(p + 4), offset: t.u64(p + 8), vaddr: t.u64(p + 16),
                                 filesz: t.u64(p + 32), memsz: t.u64(p + 40))
        }
    }

    /// The notes of a PT_NOTE segment's bytes (name, type, description), as far as they parse.
    public static func notes(_ d: [UInt8]) -> [(name: ArraySlice<UInt8>, type: UInt32, desc: ArraySlice<UInt8>)] {
        var out: [(name: ArraySlice<UInt8>, type: UInt32, desc: ArraySlice<UInt8>)] = []
        var p = 0
        while p + 12 <= d.count {
            let namesz = Int(d.u32(p)), descsz = Int(d.u32(p + 4)), type = d.u32(p + 8)
            let descStart = p + 12 + ((namesz + 3) & ~3)
            guard namesz <= d.count, descsz <= d.count, descStart <= d.count, descsz <= d.count - descStart else { break }
            out.append((d[(p + 12)..<(p + 12 + namesz)].prefix { $0 != 0 }, type, d[descStart..<descStart + descsz]))
            p = descStart + ((descsz + 3) & ~3)
        }
        return out
    }

    /// The GNU build-id note of an ELF image (bounded: a damaged image gives nil).
    public static func buildID(read: (UInt64, Int) -> [UInt8]?) -> [UInt8]? {
        guard let headers = programHeaders(read: read), headers.count < 256 else { return nil }
        for ph in headers where ph.type == 4 && ph.filesz <= 1 << 16 {
            guard let d = read(ph.offset, Int(ph.filesz)) else { continue }
            if let n = notes(d).first(where: { $0.type == 3 && $0.name.elementsEqual("GNU".utf8) }) { return Array(n.desc) }
        }
        return nil
    }

    public static func buildID(fd: Int32) -> [UInt8]? { buildID { pread(fd, $0, $1) } }

    /// `count` bytes of `fd` at `offset`, or nil.
    static func pread(_ fd: Int32, _ offset: UInt64, _ count: Int) -> [UInt8]? {
        guard count >= 0, offset <= UInt64(Int64.max) else { return nil }
        var b = [UInt8](repeating: 0, count: count)
        let got = b.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress!, count, off_t(Int64(offset))) }
        return got == count ? b : nil
    }

    /// Bytes as lower-case hex, two digits each (how build-ids are written).
    public static func hex(_ b: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        return String(b.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
    }
}

extension Array where Element == UInt8 {
    @inline(__always) func u16(_ p: Int) -> UInt16 { p >= 0 && p + 2 <= count ? UInt16(self[p]) | UInt16(self[p + 1]) << 8 : 0 }
    @inline(__always) func u32(_ p: Int) -> UInt32 { p >= 0 && p + 4 <= count ? UInt32(u16(p)) | UInt32(u16(p + 2)) << 16 : 0 }
    @inline(__always) func u64(_ p: Int) -> UInt64 { p >= 0 && p + 8 <= count ? UInt64(u32(p)) | UInt64(u32(p + 4)) << 32 : 0 }
}
