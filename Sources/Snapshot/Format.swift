import Glibc
import GlibcMalloc
import HeapModel

/// One heap snapshot: what the analyses of one inspection produced, with chunk contents only
/// when asked for. The file format is described in README.md ("Snapshot files").
public struct Snapshot: Sendable {
    /// Who and when: pid, exe, start_time (clock ticks after boot, /proc/PID/stat field 22),
    /// taken_at (Unix ns), build-ids ("build_id:/path" = hex), glibc, and so on.
    public var meta: [(key: String, value: String)]
    public var report: HeapReport
    /// Per chunk (the chunk table's order): leak class raw value (255: not outstanding).
    public var leakClass: [UInt8]
    /// Per chunk: index into `types` (-1: unknown), element count, confidence raw value, union flag.
    public var type: [Int32]
    public var count: [UInt32]
    public var confidence: [UInt8]
    public var ambiguous: [Bool]
    /// Per chunk: index into `owners` (-1: none).
    public var owner: [Int32]
    /// Per chunk: the chunk whose pointer first reached it while typing (-1: a root, or none).
    public var parent: [Int32]
    /// Distinct types the labels use (name, kind raw value, element size): enough to print them.
    public var types: [(name: String, kind: UInt8, size: UInt64)]
    public var owners: [String]
    /// Usable bytes of every outstanding chunk, in chunk order (only with --contents).
    public var contents: [UInt8]?

    public init(meta: [(key: String, value: String)], report: HeapReport, leakClass: [UInt8], type: [Int32], count: [UInt32],
                confidence: [UInt8], ambiguous: [Bool], owner: [Int32], parent: [Int32]? = nil,
                types: [(name: String, kind: UInt8, size: UInt64)], owners: [String], contents: [UInt8]?) {
        self.parent = parent ?? .init(repeating: -1, count: leakClass.count)
        self.meta = meta; self.report = report; self.leakClass = leakClass; self.type = type; self.count = count
        self.confidence = confidence; self.ambiguous = ambiguous; self.owner = owner; self.types = types
        self.owners = owners; self.contents = contents
        if self.report.coreFile == nil, let core = meta.first(where: { $0.key == "core_file" })?.value { self.report.coreFile = core }
    }

    public func value(_ key: String) -> String? { meta.first { $0.key == key }?.value }
}

/// Why a file is not a snapshot heapscope can read.
public enum SnapshotError: Error, CustomStringConvertible, Sendable {
    case io(path: String, errno: Int32, doing: String)
    case notSnapshot(path: String)
    case newerVersion(path: String, version: UInt32)
    case truncated(path: String, have: UInt64, need: UInt64)
    case corrupted(path: String, what: String)
    /// An output file heapscope will not write (checked before the target is stopped).
    case refused(path: String, why: String)

    public var description: String {
        switch self {
        case .io(let p, let e, let doing): return "cannot \(doing) \(p): \(String(cString: strerror(e)))"
        case .notSnapshot(let p): return "\(p) is not a heapscope snapshot (no HSNAP magic)"
        case .newerVersion(let p, let v):
            return "\(p) is snapshot format version \(v); this heapscope reads version \(SnapshotFile.version) and older"
        case .truncated(let p, let have, let need): return "\(p) is truncated: \(have) bytes, the header says \(need)"
        case .corrupted(let p, let what): return "\(p) is corrupted: \(what)"
        case .refused(let p, let why): return "will not write \(p): \(why)"
        }
    }
}

/// The container: header, section table, sections, each with a checksum.
///
///     offset 0   magic "HSNAP\r\n\u{1a}" (8 bytes; a text-mode transfer or a text file fails here)
///            8   format version (u32 LE), section count (u32 LE)
///           16   file length (u64 LE)
///           24   checksum of the section table (u64 LE)
///           32   section table: per section id (u32), reserved (u32), offset, length, checksum (u64 each)
///                then the sections. Integers inside sections are LEB128 varints unless noted.
public enum SnapshotFile {
    /// 2: the allocator's kinds of chunk (section `kinds`) and its trimmable bytes; chunks record
    /// their kind. Files of version 1 (glibc's states) still read.
    public static let version: UInt32 = 2
    static let magic: [UInt8] = Array("HSNAP\r\n".utf8) + [0x1a]
    enum Section: UInt32, CaseIterable {
        case meta = 1, strings, report, arenas, threads, warnings, chunks, labels, contents, exitedThreads, parents, kinds
        var name: String { "\(self)" }
    }

    // MARK: write

    /// Write `s` to `file` (mode 0600, temporary file renamed into place: see OutputFile).
    public static func write(_ s: Snapshot, to file: OutputFile) throws(SnapshotError) {
        try file.write(encode(s))
    }

    /// Write `s` to `path`, checked as OutputFile checks it.
    public static func write(_ s: Snapshot, to path: String) throws(SnapshotError) {
        try write(s, to: OutputFile(path))
    }

    public static func encode(_ s: Snapshot) -> [UInt8] {
        var sections: [(Section, [UInt8])] = []
        var w = Writer()
        w.uv(UInt64(s.meta.count)); for (k, v) in s.meta { w.str(k); w.str(v) }
        sections.append((.meta, w.take()))
        w.uv(UInt64(s.types.count)); for t in s.types { w.str(t.name); w.uv(UInt64(t.kind)); w.uv(t.size) }
        w.uv(UInt64(s.owners.count)); for o in s.owners { w.str(o) }
        sections.append((.strings, w.take()))
        let r = s.report
        w.uv(UInt64(UInt32(bitPattern: r.pid))); w.uv(r.pauseMicroseconds); w.uv(UInt64(r.attempts)); w.str(r.allocator)
        w.str(r.allocatorVersion); w.str(r.discovery); w.uv(UInt64(r.copiedBytes)); w.uv(r.analysisMicroseconds)
        w.uv(UInt64(r.heap.mmapped.count)); w.uv(r.heap.mmapped.bytes)
        for (_, v) in r.mallinfo2.fields { w.uv(v) }
        let t = r.chunks, kinds = t.kinds
        // (version 1's chunk layout: user offset, usable loss, usable loss of mapped chunks)
        w.uv(t.userOffset); w.uv(kinds.kinds.first?.usableLoss ?? 0)
        w.uv(kinds.ownMappingKinds.first.map { kinds.kinds[Int($0.rawValue)].usableLoss } ?? 0)
        sections.append((.report, w.take()))
        // Kinds: allocator, user offset, trimmable bytes; per kind its name, state, usable loss, own mapping.
        w.str(kinds.allocator); w.uv(kinds.userOffset); w.uv(r.heap.trimmableBytes)
        w.uv(UInt64(kinds.kinds.count))
        for k in kinds.kinds { w.str(k.name); w.byte(k.state.rawValue); w.uv(k.usableLoss); w.byte(k.ownMapping ? 1 : 0) }
        sections.append((.kinds, w.take()))
        w.uv(UInt64(r.arenas.count))
        for a in r.arenas {
            w.uv(UInt64(a.index)); w.uv(a.address); w.uv(a.isMain ? 1 : 0); w.uv(a.systemBytes); w.uv(a.attachedThreads)
            w.uv(a.mutexHeld ? 1 : 0); w.uv(a.top); w.uv(a.topSize)
            w.uv(UInt64(a.segments.count)); for g in a.segments { w.uv(g.start); w.uv(g.end) }
            w.uv(UInt64(a.byKind.count))
            for (st, ta) in a.byKind.sorted(by: { $0.key < $1.key }) { w.uv(UInt64(st.rawValue)); w.uv(UInt64(ta.count)); w.uv(ta.bytes) }
        }
        sections.append((.arenas, w.take()))
        w.uv(UInt64(r.threads.count))
        for th in r.threads { w.uv(UInt64(UInt32(bitPattern: th.tid))); w.uv(th.pc); w.uv(th.sp); w.uv(th.threadPointer); w.uv(th.cacheAddress.map { $0 + 1 } ?? 0) }
        sections.append((.threads, w.take()))
        w.uv(UInt64(r.warnings.count))
        for x in r.warnings { w.str(x.kind.rawValue); w.uv(x.address.map { $0 + 1 } ?? 0); w.str(x.message) }
        sections.append((.warnings, w.take()))
        // Chunks: gap to the previous chunk's end (0 in a heap segment), size / 8, state, arena + 1.
        w.uv(UInt64(t.count))
        w.reserve(t.count * 4)
        var end: UInt64 = 0
        let address = t.address.reader, size = t.size.reader   // (t is held, unchanged)
        t.kind.withUnsafeBufferPointer { kind in
            for run in t.arena.runs {
                let arena = run.arena == ChunkTable.noArena ? 0 : UInt64(run.arena) + 1
                for i in run.range {
                    let a = address.address(i), s = size.size(i)
                    w.uv(a &- end); w.uv(s >> 3); w.byte(kind[i].rawValue); w.uv(arena)
                    end = a &+ s
                }
            }
        }
        sections.append((.chunks, w.take()))
        // Labels: class, then type + 1, count, confidence | union << 7, owner + 1 (types only when typed).
        w.reserve(t.count * 4)
        for i in 0..<t.count {
            w.byte(s.leakClass[i])
            w.uv(UInt64(Int64(s.type[i]) + 1))
            if s.type[i] >= 0 { w.uv(UInt64(s.count[i])); w.byte(s.confidence[i] | (s.ambiguous[i] ? 0x80 : 0)) }
            w.uv(UInt64(Int64(s.owner[i]) + 1))
        }
        sections.append((.labels, w.take()))
        if let c = s.contents { sections.append((.contents, c)) }
        // Parents: zigzag(i - parent) per chunk, 0 for none (a chunk never reaches itself first).
        if s.parent.contains(where: { $0 >= 0 }) {
            w.reserve(t.count * 2)
            for i in 0..<t.count {
                let p = s.parent[i]
                if p < 0 { w.byte(0); continue }
                let d = Int64(i) - Int64(p)
                w.uv(UInt64(bitPattern: (d << 1) ^ (d >> 63)))
            }
            sections.append((.parents, w.take()))
        }
        // Exited threads' stacks (absent: the descriptors could not be read; older files).
        if let ex = r.heap.exitedThreads {
            w.uv(UInt64(ex.count))
            for x in ex { w.uv(x.descriptor); w.uv(x.start); w.uv(x.end &- x.start); w.byte(x.state.rawValue); w.uv(x.heapBlock) }
            sections.append((.exitedThreads, w.take()))
        }

        let tableSize = 32 * sections.count
        var out = [UInt8](); out.reserveCapacity(32 + tableSize + sections.reduce(0) { $0 + $1.1.count })
        out += magic
        put32(&out, version); put32(&out, UInt32(sections.count))
        var table = [UInt8]()
        var offset = UInt64(32 + tableSize)
        for (id, body) in sections {
            put32(&table, id.rawValue); put32(&table, 0); put64(&table, offset); put64(&table, UInt64(body.count))
            put64(&table, checksum(body[...]))
            offset += UInt64(body.count)
        }
        put64(&out, offset); put64(&out, checksum(table[...]))
        out += table
        for (_, body) in sections { out += body }
        return out
    }

    // MARK: read

    public static func read(_ path: String) throws(SnapshotError) -> Snapshot {
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .io(path: path, errno: errno, doing: "open") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(path: path, errno: errno, doing: "read") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .notSnapshot(path: path) }
        func readFully(_ count: Int) throws(SnapshotError) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: count)
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + off, $0.count - off) }
                if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; throw .io(path: path, errno: errno, doing: "read") }
                if n == 0 { break }
                off += n
            }
            bytes.removeLast(bytes.count - off)
            return bytes
        }
        // The header first: the magic, and the length it gives, before the file is read whole.
        let size = UInt64(st.st_size)
        let head = try readFully(Int(min(size, 32)))
        guard head.count >= 8, Array(head[0..<8]) == magic else { throw .notSnapshot(path: path) }
        guard head.count == 32 else { throw .truncated(path: path, have: size, need: 32) }
        let length = get64(head, 16)
        if size < length { throw .truncated(path: path, have: size, need: length) }
        if size > length { throw .corrupted(path: path, what: "\(size - length) bytes after the end the header gives") }
        return try decode(head + (try readFully(Int(size - 32))), path: path)
    }

    public static func decode(_ b: [UInt8], path: String) throws(SnapshotError) -> Snapshot {
        guard b.count >= 8, Array(b[0..<8]) == magic else { throw .notSnapshot(path: path) }
        guard b.count >= 32 else { throw .truncated(path: path, have: UInt64(b.count), need: 32) }
        let version = get32(b, 8), count = Int(get32(b, 12)), length = get64(b, 16)
        if version > SnapshotFile.version || version == 0 { throw .newerVersion(path: path, version: version) }
        if UInt64(b.count) < length { throw .truncated(path: path, have: UInt64(b.count), need: length) }
        if UInt64(b.count) > length { throw .corrupted(path: path, what: "\(UInt64(b.count) - length) bytes after the end the header gives") }
        guard count <= 64, 32 + 32 * count <= b.count else { throw .corrupted(path: path, what: "section table (\(count) sections)") }
        guard checksum(b[32..<32 + 32 * count]) == get64(b, 24) else { throw .corrupted(path: path, what: "section table checksum mismatch") }
        var body: [Section: ArraySlice<UInt8>] = [:]
        for k in 0..<count {
            let e = 32 + 32 * k
            let id = get32(b, e), o = get64(b, e + 8), n = get64(b, e + 16), sum = get64(b, e + 24)
            guard o <= length, n <= length - o else { throw .corrupted(path: path, what: "section \(id) lies outside the file") }
            guard let sec = Section(rawValue: id) else { continue }   // unknown sections of the same version: skipped
            let slice = b[Int(o)..<Int(o + n)]
            guard checksum(slice) == sum else { throw .corrupted(path: path, what: "section \(sec.name) checksum mismatch") }
            body[sec] = slice
        }
        for sec in [Section.meta, .strings, .report, .arenas, .threads, .warnings, .chunks, .labels] where body[sec] == nil {
            throw .corrupted(path: path, what: "section \(sec.name) is missing")
        }
        do {
            var r = Reader(body[.meta]!)
            var meta: [(key: String, value: String)] = []
            for _ in 0..<(try r.count(2)) { meta.append((try r.str(), try r.str())) }
            r = Reader(body[.strings]!)
            var types: [(name: String, kind: UInt8, size: UInt64)] = []
            for _ in 0..<(try r.count(3)) { types.append((try r.str(), UInt8(truncatingIfNeeded: try r.uv()), try r.uv())) }
            var owners: [String] = []
            for _ in 0..<(try r.count(1)) { owners.append(try r.str()) }
            r = Reader(body[.report]!)
            let pid = Int32(bitPattern: UInt32(truncatingIfNeeded: try r.uv())), pause = try r.quantity(), attempts = try r.int()
            let allocator = try r.str(), allocVersion = try r.str(), discovery = try r.str()
            let copied = try r.int(), analysis = try r.quantity()
            let mm = Tally(count: try r.int(), bytes: try r.quantity())
            var mi = MallInfo2()
            mi.arena = try r.quantity(); mi.ordblks = try r.quantity(); mi.smblks = try r.quantity(); mi.hblks = try r.quantity(); mi.hblkhd = try r.quantity()
            mi.usmblks = try r.quantity(); mi.fsmblks = try r.quantity(); mi.uordblks = try r.quantity(); mi.fordblks = try r.quantity(); mi.keepcost = try r.quantity()
            let userOffset = try r.uv(), loss = try r.uv(), lossMm = try r.uv()
            // (glibc's are 16, 8 and 16 or 8: a chunk header is never larger than 64 bytes)
            guard userOffset <= 64, loss <= 64, lossMm <= 64 else { throw Reader.Bad.value("chunk header sizes \(userOffset), \(loss), \(lossMm)") }
            // The allocator's kinds: recorded from version 2; version 1 files are glibc's.
            var kinds = GlibcKinds.table(headerSize: userOffset, sizeField: loss, mmappedLoss: lossMm)
            var trimmable: UInt64? = nil
            if version >= 2 {
                guard let k = body[.kinds] else { throw Reader.Bad.value("section kinds is missing") }
                r = Reader(k)
                let allocator = try r.str(), offset = try r.uv(), trim = try r.quantity()
                guard offset <= 64 else { throw Reader.Bad.value("user offset \(offset)") }
                var list: [AllocatorKinds.Kind] = []
                for _ in 0..<(try r.count(4)) {
                    let name = try r.str()
                    guard let st = ChunkState(rawValue: try r.byte()) else { throw Reader.Bad.value("chunk state of kind \(name)") }
                    let l = try r.uv()
                    guard l <= 64 else { throw Reader.Bad.value("usable loss \(l) of kind \(name)") }
                    list.append(.init(name: name, state: st, usableLoss: l, ownMapping: try r.byte() != 0))
                }
                guard list.count <= 255 else { throw Reader.Bad.value("\(list.count) kinds of chunk") }
                kinds = AllocatorKinds(allocator: allocator, kinds: list, userOffset: offset)
                trimmable = trim
            }
            let kindCount = kinds.kinds.count
            r = Reader(body[.arenas]!)
            var arenas: [ArenaSummary] = []
            for _ in 0..<(try r.count(10)) {
                let index = try r.int(), address = try r.uv(), isMain = try r.uv() != 0, system = try r.quantity(), attached = try r.quantity()
                let held = try r.uv() != 0, top = try r.uv(), topSize = try r.quantity()
                var segs: [Segment] = []
                for _ in 0..<(try r.count(2)) {
                    let s = try r.uv(), e = try r.uv()
                    guard s <= e else { throw Reader.Bad.value("segment 0x\(String(s, radix: 16))-0x\(String(e, radix: 16))") }
                    segs.append(Segment(start: s, end: e))
                }
                var by: [ChunkKind: Tally] = [:]
                for _ in 0..<(try r.count(3)) {
                    let v = try r.uv()
                    guard v < UInt64(kindCount) else { throw Reader.Bad.value("chunk kind \(v)") }
                    by[ChunkKind(UInt8(v))] = Tally(count: try r.int(), bytes: try r.quantity())
                }
                arenas.append(ArenaSummary(index: index, address: address, isMain: isMain, systemBytes: system, segments: segs,
                                           attachedThreads: attached, mutexHeld: held, byKind: by, top: top, topSize: topSize))
            }
            r = Reader(body[.threads]!)
            var threads: [ThreadInfo] = []
            for _ in 0..<(try r.count(5)) {
                let tid = Int32(bitPattern: UInt32(truncatingIfNeeded: try r.uv())), pc = try r.uv(), sp = try r.uv(), tp = try r.uv(), c = try r.uv()
                threads.append(ThreadInfo(tid: tid, pc: pc, sp: sp, threadPointer: tp, cacheAddress: c == 0 ? nil : c - 1))
            }
            r = Reader(body[.warnings]!)
            var warnings: [HeapWarning] = []
            for _ in 0..<(try r.count(3)) {
                let kind = try r.str(), a = try r.uv(), msg = try r.str()
                guard let k = HeapWarning.Kind(rawValue: kind) else { throw Reader.Bad.value("warning kind \(kind)") }
                warnings.append(HeapWarning(k, a == 0 ? nil : a - 1, msg))
            }
            r = Reader(body[.chunks]!)
            let n = try r.count(4)
            // Into the table's own compact columns (no plain columns of 19 bytes a chunk first).
            guard n < Int(Int32.max) else { throw Reader.Bad.value("\(n) chunks: more than a chunk table holds") }
            var built = ChunkTable.Builder()
            built.reserve(n)
            let arenaCount = UInt64(arenas.count)
            var end: UInt64 = 0
            for i in 0..<n {
                // In address order, without overlap, in the user address space (below 2^57,
                // 5-level paging's), each at least a header.
                let (a, o1) = end.addingReportingOverflow(try r.uv())
                let units = try r.uv()
                guard !o1, a < 1 << 57, units <= 1 << 54, units << 3 >= userOffset else {
                    throw Reader.Bad.value("chunk \(i) at 0x\(String(a, radix: 16)), \(units) units")
                }
                let s = units << 3
                let kb = try r.byte()
                guard Int(kb) < kindCount else { throw Reader.Bad.value("chunk kind \(kb)") }
                let k = try r.uv()
                guard k <= arenaCount else { throw Reader.Bad.value("arena \(k - 1)") }
                built.append(a, s, ChunkKind(kb), k == 0 ? ChunkTable.noArena : UInt16(k - 1))
                end = a &+ s
            }
            r = Reader(body[.labels]!)
            var cls = [UInt8](repeating: 255, count: n), type = [Int32](repeating: -1, count: n), cnt = [UInt32](repeating: 1, count: n)
            var conf = [UInt8](repeating: 0, count: n), amb = [Bool](repeating: false, count: n), own = [Int32](repeating: -1, count: n)
            let typeCount = UInt64(types.count), ownerCount = UInt64(owners.count)
            try cls.withUnsafeMutableBufferPointer { cl in try type.withUnsafeMutableBufferPointer { ty in
                try cnt.withUnsafeMutableBufferPointer { cn in try conf.withUnsafeMutableBufferPointer { co in
                    try amb.withUnsafeMutableBufferPointer { am in try own.withUnsafeMutableBufferPointer { ow in
                        for i in 0..<n {
                            cl[i] = try r.byte()
                            let t = try r.uv()
                            guard t <= typeCount else { throw Reader.Bad.value("type \(t - 1)") }
                            ty[i] = Int32(t) - 1
                            if t > 0 {
                                cn[i] = UInt32(truncatingIfNeeded: try r.uv())
                                let c = try r.byte()
                                co[i] = c & 0x7f; am[i] = c & 0x80 != 0
                            }
                            let o = try r.uv()
                            guard o <= ownerCount else { throw Reader.Bad.value("owner \(o - 1)") }
                            ow[i] = Int32(o) - 1
                        }
                    } }
                } }
            } }
            let table = built.table(kinds: kinds)
            var exited: [ExitedThread]?
            if let e = body[.exitedThreads] {
                r = Reader(e)
                var list: [ExitedThread] = []
                for _ in 0..<(try r.count(5)) {
                    let d = try r.uv(), start = try r.uv(), size = try r.quantity()
                    guard let st = ExitedThread.State(rawValue: try r.byte()), start < 1 << 57 else { throw Reader.Bad.value("exited thread") }
                    list.append(ExitedThread(descriptor: d, start: start, end: start + size, state: st, heapBlock: try r.uv()))
                }
                exited = list
            }
            let walk = HeapWalk(arenas: arenas, mmapped: mm, mallinfo2: mi, chunks: table, threads: threads, warnings: warnings,
                                exitedThreads: exited, trimmableBytes: trimmable ?? GlibcKinds.trimmableBytes(table))
            let report = HeapReport(pid: pid, pauseMicroseconds: pause, attempts: attempts, allocator: allocator,
                                    allocatorVersion: allocVersion, discovery: discovery, heap: walk, copiedBytes: copied,
                                    analysisMicroseconds: analysis)
            let contents = body[.contents].map { Array($0) }
            if let c = contents {
                var need: UInt64 = 0
                for i in 0..<n where table.isOutstanding(i) {
                    let (sum, o) = need.addingReportingOverflow(table.usableSize(i))
                    guard !o else { throw Reader.Bad.value("contents of more than 2^64 bytes") }
                    need = sum
                }
                guard UInt64(c.count) == need else { throw Reader.Bad.value("contents hold \(c.count) bytes, the chunks \(need)") }
            }
            var parent = [Int32](repeating: -1, count: n)
            if let body = body[.parents] {
                r = Reader(body)
                for i in 0..<n {
                    let z = try r.uv()
                    guard z != 0 else { continue }
                    let d = Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1)))
                    let (p, o) = Int64(i).subtractingReportingOverflow(d)
                    guard !o, p >= 0, p < Int64(n) else { throw Reader.Bad.value("parent of chunk \(i)") }
                    parent[i] = Int32(p)
                }
                // A forest: following parents from any chunk ends at a root (no cycle).
                var mark = [UInt8](repeating: 0, count: n)   // 0 unseen, 1 on the current path, 2 ends at a root
                var path: [Int] = []
                for i in 0..<n where mark[i] == 0 {
                    var j = i
                    while j >= 0 && mark[j] == 0 { mark[j] = 1; path.append(j); j = Int(parent[j]) }
                    if j >= 0 && mark[j] == 1 { throw Reader.Bad.value("parents of chunk \(j) form a cycle") }
                    for k in path { mark[k] = 2 }
                    path.removeAll(keepingCapacity: true)
                }
            }
            return Snapshot(meta: meta, report: report, leakClass: cls, type: type, count: cnt, confidence: conf, ambiguous: amb,
                            owner: own, parent: parent, types: types, owners: owners, contents: contents)
        } catch let e as Reader.Bad {
            throw .corrupted(path: path, what: e.description)
        } catch {
            throw .corrupted(path: path, what: "\(error)")
        }
    }

    // MARK: primitives

    /// A 64-bit checksum over 8-byte words (multiply-rotate mixing; ~4 GB/s), then the tail.
    /// (Public for tools that rewrite files, such as the fuzz harness re-sealing its mutants.)
    public static func checksum(_ s: ArraySlice<UInt8>) -> UInt64 {
        var h: UInt64 = 0x9e37_79b9_7f4a_7c15 ^ UInt64(s.count)
        s.withUnsafeBytes { p in
            let n = p.count / 8
            for i in 0..<n {
                let w = p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
                h = (h ^ (w &* 0xff51_afd7_ed55_8ccd)).rotatedLeft(27) &* 0xc4ce_b9fe_1a85_ec53 &+ 0x52dc_e729
            }
            for i in (n * 8)..<p.count { h = (h ^ UInt64(p[i])) &* 0x100_0000_01b3 }
        }
        h ^= h >> 33; h = h &* 0xff51_afd7_ed55_8ccd; h ^= h >> 33
        return h
    }
    static func put32(_ o: inout [UInt8], _ v: UInt32) { for k in 0..<4 { o.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(k)))) } }
    static func put64(_ o: inout [UInt8], _ v: UInt64) { for k in 0..<8 { o.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) } }
    static func get32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) } }
    static func get64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) } }
}

extension UInt64 {
    @inline(__always) func rotatedLeft(_ n: UInt64) -> UInt64 { (self << n) | (self >> (64 - n)) }
}

/// Section bytes: varints and bytes stored straight into a growing buffer (an Array append per
/// byte cost a third of writing a 10M-chunk snapshot).
struct Writer: ~Copyable {
    private var base = UnsafeMutablePointer<UInt8>.allocate(capacity: 4096)
    private var capacity = 4096, count = 0
    deinit { base.deallocate() }
    mutating func reserve(_ n: Int) {
        guard count + n > capacity else { return }
        var c = capacity
        while c < count + n { c *= 2 }
        let b = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
        b.update(from: base, count: count)
        base.deallocate()
        base = b; capacity = c
    }
    @inline(__always) mutating func byte(_ v: UInt8) {
        if count == capacity { reserve(1) }
        base[count] = v; count += 1
    }
    @inline(__always) mutating func uv(_ v: UInt64) {
        if count + 10 > capacity { reserve(10) }
        var v = v
        while v >= 0x80 { base[count] = UInt8(v & 0x7f) | 0x80; count += 1; v >>= 7 }
        base[count] = UInt8(v); count += 1
    }
    mutating func str(_ s: String) {
        let u = Array(s.utf8)
        uv(UInt64(u.count)); reserve(u.count)
        for x in u { base[count] = x; count += 1 }
    }
    /// The bytes so far; the writer starts again empty.
    mutating func take() -> [UInt8] {
        defer { count = 0 }
        return Array(UnsafeBufferPointer(start: base, count: count))
    }
}

/// Bounded reading of a section: every read checks the end.
struct Reader {
    enum Bad: Error, CustomStringConvertible {
        case end, value(String)
        var description: String {
            switch self {
            case .end: return "a section ends in the middle of a value"
            case .value(let s): return "impossible value: \(s)"
            }
        }
    }
    let b: ArraySlice<UInt8>
    var i: Int
    init(_ b: ArraySlice<UInt8>) { self.b = b; i = b.startIndex }
    @inline(__always) mutating func byte() throws(Bad) -> UInt8 {
        guard i < b.endIndex else { throw .end }
        defer { i += 1 }
        return b[i]
    }
    @inline(__always) mutating func uv() throws(Bad) -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while true {
            let x = try byte()
            guard shift < 64 else { throw .value("varint longer than 64 bits") }
            v |= UInt64(x & 0x7f) << shift
            if x < 0x80 { return v }
            shift += 7
        }
    }
    /// A count of items of at least `minBytes` each: no larger than what is left can hold.
    mutating func count(_ minBytes: Int) throws(Bad) -> Int {
        let n = try uv()
        guard n <= UInt64(b.endIndex - i) / UInt64(max(minBytes, 1)) else { throw .value("count \(n) for \(b.endIndex - i) bytes") }
        return Int(n)
    }
    /// A count or index as an Int (never above 2^48: no file holds more of anything).
    mutating func int() throws(Bad) -> Int {
        let v = try uv()
        guard v <= 1 << 48 else { throw .value("count \(v)") }
        return Int(v)
    }
    /// A number of bytes (or of microseconds): never above 2^57, the largest x86-64 address space.
    mutating func quantity() throws(Bad) -> UInt64 {
        let v = try uv()
        guard v <= 1 << 57 else { throw .value("quantity \(v)") }
        return v
    }
    mutating func str() throws(Bad) -> String {
        let n = try count(1)
        defer { i += n }
        return String(decoding: b[i..<i + n], as: UTF8.self)
    }
}
