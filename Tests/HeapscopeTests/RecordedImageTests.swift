import Foundation
import GlibcMalloc
import HeapModel
import Inspect
import ProcessAccess
import Testing

/// Recorded images: small gzipped ELF core files in Tests/Images holding only what glibc's
/// walker reads of a TestTarget (its heap and mmapped chunks' mappings, the arena structs,
/// main_arena and mp_, each thread's registers and TLS window), with the facts the walker would
/// have found from libc's symbols (`NAME.facts`) and the target's own manifest (`NAME.manifest`).
/// No code is in them, and of libc's data only main_arena and mp_ (runtime state). Replaying
/// one needs no root, no ptrace and no libc of the same build: the walker runs on the core in
/// milliseconds, and must find exactly what the program said it allocated.
///
/// `RecordedImage.record` makes them from a live TestTarget (the recording test below checks the
/// recorder on a fresh one every run); `HEAPSCOPE_RECORD_IMAGES=DIR make test` also writes that
/// run's images to DIR, to be copied into Tests/Images when the walker's input changes.
enum RecordedImage {
    static let directory = "\(Paths.root)/Tests/Images"
    /// The recorded TestTargets: one thread and every kind of chunk (three mmapped); 8 threads and 9 arenas.
    static let names = ["heap_kinds", "threads"]

    struct Facts {
        var glibc: String
        var mainArena: UInt64, mp: UInt64
        var tcacheTLSOffset: UInt64?, threadArenaTLSOffset: UInt64?
        var text: String {
            "glibc \(glibc)\nmain_arena \(hex(mainArena))\nmp \(hex(mp))\n"
                + (tcacheTLSOffset.map { "tcache_tls \(hex($0))\n" } ?? "") + (threadArenaTLSOffset.map { "thread_arena_tls \(hex($0))\n" } ?? "")
        }
        init(glibc: String, mainArena: UInt64, mp: UInt64, tcacheTLSOffset: UInt64?, threadArenaTLSOffset: UInt64?) {
            self.glibc = glibc; self.mainArena = mainArena; self.mp = mp
            self.tcacheTLSOffset = tcacheTLSOffset; self.threadArenaTLSOffset = threadArenaTLSOffset
        }
        init(text: String) throws {
            var d: [String: String] = [:]
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ")
                if f.count == 2 { d[String(f[0])] = String(f[1]) }
            }
            func addr(_ k: String) -> UInt64? { d[k].flatMap { UInt64($0.dropFirst(2), radix: 16) } }
            guard let g = d["glibc"], let a = addr("main_arena"), let m = addr("mp") else { throw HarnessError(description: "facts lack glibc, main_arena or mp: \(text)") }
            self.init(glibc: g, mainArena: a, mp: m, tcacheTLSOffset: addr("tcache_tls"), threadArenaTLSOffset: addr("thread_arena_tls"))
        }
    }

    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// Record the heap of `p` (a TestTarget waiting on its manifest) to DIR/NAME.core, .facts, .manifest.
    static func record(_ p: TargetProcess, name: String, to dir: String) throws {
        let image = try Inspector.image(.process(p.pid), writable: false)
        guard let c = image.allocatorCapture as? GlibcCapture else { throw HarnessError(description: "not glibc's capture") }
        let L = c.target.layout
        var loads: [(vaddr: UInt64, memsz: UInt64, bytes: [UInt8])] = []
        // Whole mappings (as a core holds them) for the heap segments and the mmapped chunks:
        // everything the walker reads there, and what lies beside them in the same mapping.
        let maps = image.mappings.filter { $0.readable && $0.writable }
        let heapRanges = c.segments.map { ($0.mapped.start, $0.mapped.end) }
            + c.mmappedChunks.map { ($0.address - $0.lead, $0.address + $0.size + L.mmappedTrailer) }
        let whole: [(start: UInt64, end: UInt64)] = maps.filter { m in heapRanges.contains { $0.0 < m.end && m.start < $0.1 } }.map { ($0.start, $0.end) }
        // Elsewhere only what the capture copied, but libc's own data (of which main_arena and
        // mp_ alone are kept), and each thread's TLS window (where its tcache pointer lives,
        // below the thread pointer; the main thread's may lie in libc's .bss tail).
        let data = c.target.dataRanges
        var ranges: [(start: UInt64, end: UInt64)] = c.image.regions.filter { r in !data.contains { $0.start < r.end && r.start < $0.end } }
            .map { ($0.start, $0.end) }
        ranges += [(c.mainArena, c.mainArena + L.arenaSize), (c.mp, c.mp + L.mpSize)]
        ranges += c.threads.filter { $0.fsBase > 0x4000 }.map { ($0.fsBase - 0x4000, $0.fsBase + 0x100) }
        // Clipped to the mappings they lie in (one piece per mapping), outside the whole ones.
        var pieces: [(start: UInt64, end: UInt64)] = []
        for r in ranges {
            var parts = maps.compactMap { m -> (start: UInt64, end: UInt64)? in
                let s = max(m.start, r.start), e = min(m.end, r.end)
                return s < e ? (s, e) : nil
            }
            for w in whole {
                parts = parts.flatMap { p -> [(start: UInt64, end: UInt64)] in
                    if w.end <= p.start || w.start >= p.end { return [p] }
                    return [(p.start, w.start), (w.end, p.end)].filter { $0.0 < $0.1 }
                }
            }
            pieces += parts
        }
        // Overlapping pieces of one mapping merged; whole mappings kept apart.
        pieces.sort { $0.start < $1.start }
        var merged: [(start: UInt64, end: UInt64)] = []
        for r in pieces {
            if let last = merged.last, r.start <= last.end, maps.contains(where: { $0.start <= last.start && r.end <= $0.end }) {
                merged[merged.count - 1].end = max(last.end, r.end)
            } else { merged.append(r) }
        }
        merged += whole
        // Read from the waiting process.
        let remote = RemoteMemory(pid: p.pid)
        for r in merged {
            guard let b = remote.bytes(r.start, count: Int(r.end - r.start)) else { throw HarnessError(description: "\(hex(r.start))-\(hex(r.end)) unreadable") }
            loads.append((r.start, r.end - r.start, b))
        }
        loads.sort { $0.vaddr < $1.vaddr }
        let threads = c.threads.map { t in (tid: t.tid, regs: withUnsafeBytes(of: t.regs) { Array($0.bindMemory(to: UInt64.self).prefix(27)) }) }
        try writeCore(dir + "/\(name).core", pid: p.pid, threads: threads, loads: loads)
        // Gzipped: the untouched parts of heaps and mmapped chunks are zeros.
        let z = try run("/bin/gzip", ["-9nf", dir + "/\(name).core"])
        guard z.status == 0 else { throw HarnessError(description: "gzip: \(z.err)") }
        let facts = Facts(glibc: L.version, mainArena: c.mainArena, mp: c.mp, tcacheTLSOffset: c.target.tcacheTLSOffset,
                          threadArenaTLSOffset: c.target.threadArenaTLSOffset)
        try facts.text.write(toFile: dir + "/\(name).facts", atomically: true, encoding: .utf8)
        try p.manifestText.write(toFile: dir + "/\(name).manifest", atomically: true, encoding: .utf8)
    }

    /// A minimal x86-64 ELF core: one PT_NOTE (NT_PRSTATUS per thread, NT_PRPSINFO), then one
    /// PT_LOAD per range (memsz its length, filesz the bytes held).
    static func writeCore(_ path: String, pid: Int32, threads: [(tid: Int32, regs: [UInt64])], loads: [(vaddr: UInt64, memsz: UInt64, bytes: [UInt8])]) throws {
        var notes: [UInt8] = []
        func put<T: FixedWidthInteger>(_ v: T, _ into: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { into.append(contentsOf: $0) } }
        func note(_ type: UInt32, _ desc: [UInt8]) {
            put(UInt32(5), &notes); put(UInt32(desc.count), &notes); put(type, &notes)
            notes += Array("CORE\0\0\0\0".utf8)
            notes += desc + [UInt8](repeating: 0, count: (4 - desc.count % 4) % 4)
        }
        for t in threads {
            var d = [UInt8](repeating: 0, count: 336)
            withUnsafeBytes(of: UInt32(bitPattern: t.tid).littleEndian) { d.replaceSubrange(32..<36, with: $0) }
            for (i, r) in t.regs.enumerated() { withUnsafeBytes(of: r.littleEndian) { d.replaceSubrange(112 + 8 * i..<120 + 8 * i, with: $0) } }
            note(1, d)
        }
        var ps = [UInt8](repeating: 0, count: 136)
        withUnsafeBytes(of: UInt32(bitPattern: pid).littleEndian) { ps.replaceSubrange(24..<28, with: $0) }
        note(3, ps)
        let phnum = 1 + loads.count
        var offset = UInt64(64 + 56 * phnum)
        var out: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        put(UInt16(4), &out); put(UInt16(62), &out); put(UInt32(1), &out)
        put(UInt64(0), &out); put(UInt64(64), &out); put(UInt64(0), &out)
        put(UInt32(0), &out); put(UInt16(64), &out); put(UInt16(56), &out); put(UInt16(phnum), &out)
        put(UInt16(64), &out); put(UInt16(0), &out); put(UInt16(0), &out)
        func phdr(_ type: UInt32, _ flags: UInt32, _ off: UInt64, _ vaddr: UInt64, _ filesz: UInt64, _ memsz: UInt64, _ align: UInt64) {
            put(type, &out); put(flags, &out); put(off, &out); put(vaddr, &out); put(UInt64(0), &out)
            put(filesz, &out); put(memsz, &out); put(align, &out)
        }
        phdr(4, 4, offset, 0, UInt64(notes.count), 0, 4)
        offset += UInt64(notes.count)
        for l in loads {
            phdr(1, 6, offset, l.vaddr, UInt64(l.bytes.count), l.memsz, 4096)
            offset += UInt64(l.bytes.count)
        }
        out += notes
        for l in loads { out += l.bytes }
        try Data(out).write(to: URL(fileURLWithPath: path))
    }

    /// The walk of a recorded image, as `stat` would report it.
    static func replay(_ dir: String, _ name: String) throws -> (report: HeapReport, manifest: Manifest) {
        let tmp = try temporaryDirectory("replay")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let z = try run("/bin/sh", ["-c", "gzip -dc \"$0\" > \"$1\"", dir + "/\(name).core.gz", tmp + "/core"])
        guard z.status == 0 else { throw HarnessError(description: "gzip -d \(name).core.gz: \(z.err)") }
        let core = try CoreFile(path: tmp + "/core")
        let facts = try Facts(text: String(contentsOfFile: dir + "/\(name).facts", encoding: .utf8))
        let manifest = Manifest(text: try String(contentsOfFile: dir + "/\(name).manifest", encoding: .utf8))
        guard let layout = GlibcLayout(version: facts.glibc) else { throw HarnessError(description: "no layout for glibc \(facts.glibc)") }
        let target = GlibcTarget(pid: core.pid, maps: core.maps, layout: layout,
                                 dataRanges: [Segment(start: facts.mainArena, end: facts.mainArena + layout.arenaSize),
                                              Segment(start: facts.mp, end: facts.mp + layout.mpSize)],
                                 mainArenaSymbol: facts.mainArena, mpSymbol: facts.mp, tcacheTLSOffset: facts.tcacheTLSOffset,
                                 threadArenaTLSOffset: facts.threadArenaTLSOffset, mallocFunctions: [], symbolSource: "recorded",
                                 remote: RemoteMemory(core: core))
        let capture = GlibcCapture(target: target)
        try capture.captureHeap(threads: core.threads, mmappedFrom: LivePages(remote: target.remote))
        let report = HeapReport(pid: core.pid, pauseMicroseconds: 0, attempts: 0, allocator: target.allocatorName,
                                allocatorVersion: target.version, discovery: capture.discovery, heap: capture.walk(),
                                copiedBytes: capture.image.totalBytes, analysisMicroseconds: 0)
        return (report, manifest)
    }
}

@Suite("Recorded images", .serialized, .timeLimit(.minutes(3)))
struct RecordedImageTests {
    @Test("the walker on the images in Tests/Images, without root or ptrace: exactly the chunks, bins, mallinfo2 and threads the program recorded", arguments: RecordedImage.names)
    func replay(_ name: String) throws {
        let t0 = Date()
        let (report, manifest) = try RecordedImage.replay(RecordedImage.directory, name)
        expectExact(report, manifest, signature: false)
        #expect(report.chunks.count > 0)
        print("recorded image \(name): \(report.chunks.count) chunks walked in \(Int(Date().timeIntervalSince(t0) * 1000)) ms")
    }

    @Test("the recorder: a fresh recording of each TestTarget replays exactly (HEAPSCOPE_RECORD_IMAGES=DIR keeps it)", arguments: RecordedImage.names)
    func recorder(_ name: String) throws {
        let keep = ProcessInfo.processInfo.environment["HEAPSCOPE_RECORD_IMAGES"]
        let dir = try keep ?? temporaryDirectory("images")
        defer { if keep == nil { try? FileManager.default.removeItem(atPath: dir) } }
        let p = try TargetProcess(name)
        defer { p.release() }
        try RecordedImage.record(p, name: name, to: dir)
        let (report, manifest) = try RecordedImage.replay(dir, name)
        expectExact(report, manifest, signature: false)
        // Small: only what the walker reads.
        let size = try FileManager.default.attributesOfItem(atPath: dir + "/\(name).core.gz")[.size] as? Int ?? 0
        #expect(size < 1 << 20, "\(name).core.gz is \(size) bytes")
    }
}
