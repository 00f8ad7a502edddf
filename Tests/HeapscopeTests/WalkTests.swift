import Foundation
import GlibcMalloc
import HeapModel
import Inspect
import ProcessAccess
import Testing

/// Compares one inspection with the target's own account of its heap, exactly.
func expectExact(_ r: HeapReport, _ m: Manifest, signature: Bool, sourceLocation: SourceLocation = #_sourceLocation) {
    let t = r.chunks
    // 1. The outstanding set: every in-use and mmapped chunk, by user address, with usable size.
    var outstanding: [UInt64: UInt64] = [:]
    for i in 0..<t.count where t.isOutstanding(i) { outstanding[t.userAddress(i)] = t.usableSize(i) }
    #expect(outstanding.count == m.live.count, "outstanding chunk count", sourceLocation: sourceLocation)
    let missing = m.live.filter { outstanding[$0.key] != $0.value }
    let extra = outstanding.filter { m.live[$0.key] == nil }
    #expect(missing.isEmpty, "manifest chunks not found in use with that usable size: \(missing.prefix(5).map { (String($0.key, radix: 16), $0.value, outstanding[$0.key] as Any) })", sourceLocation: sourceLocation)
    #expect(extra.isEmpty, "in-use chunks the target does not know: \(extra.prefix(5).map { (String($0.key, radix: 16), $0.value) })", sourceLocation: sourceLocation)
    // 2. mmapped chunks are reported as such.
    for a in m.mmapped {
        let i = t.index(ofChunkAt: a - t.userOffset)
        #expect(i.map { t.kind[$0] } == GlibcKinds.mmapped, "0x\(String(a, radix: 16)) should be mmapped", sourceLocation: sourceLocation)
    }
    // 3. Every chunk freed on purpose is in the expected kind of bin.
    for (a, kind) in m.freed {
        let i = t.index(ofChunkAt: a - t.userOffset)
        #expect(i.map { t.kindName($0) } == kind, "freed 0x\(String(a, radix: 16)) expected \(kind), got \(i.map { t.kindName($0) } ?? "no chunk")", sourceLocation: sourceLocation)
    }
    // 4. mallinfo2, field by field.
    for (name, value) in r.mallinfo2.fields {
        #expect(m.mallinfo2[name] == value, "mallinfo2.\(name): target says \(m.mallinfo2[name] ?? 0), heapscope \(value)", sourceLocation: sourceLocation)
    }
    // 5. Every thread, and one tcache struct (malloc_internal chunk) per thread that allocated.
    #expect(r.threads.count == m.threads, sourceLocation: sourceLocation)
    let internalChunks = (0..<t.count).filter { t.kind[$0] == GlibcKinds.mallocInternal }.count
    #expect(internalChunks == r.threads.filter { $0.cacheAddress != nil }.count, sourceLocation: sourceLocation)
    #expect(internalChunks == m.threads, "every thread of these targets has allocated, so has a tcache", sourceLocation: sourceLocation)
    // 6. How malloc's state was found, and a clean walk.
    #expect(r.discovery.contains("signature") == signature, "discovery: \(r.discovery)", sourceLocation: sourceLocation)
    #expect(r.warnings.isEmpty, "warnings: \(r.warnings.map(\.message))", sourceLocation: sourceLocation)
    #expect(versionMatches(r.allocatorVersion, m.glibc), "heapscope says glibc \(r.allocatorVersion), the target runs \(m.glibc)", sourceLocation: sourceLocation)
}

/// A version heapscope read ("2.36"), or a range it inferred from the layout ("2.35–2.41"),
/// against the version the target runs.
func versionMatches(_ reported: String, _ actual: String) -> Bool {
    let bounds = reported.split(separator: "–").map { $0.split(separator: ".").compactMap { Int($0) } }
    let v = actual.split(separator: ".").compactMap { Int($0) }
    guard v.count >= 2, bounds.count == 1 || bounds.count == 2, bounds.allSatisfy({ $0.count == 2 }) else { return false }
    if bounds.count == 1 { return reported == actual }
    return (v[0], v[1]) >= (bounds[0][0], bounds[0][1]) && (v[0], v[1]) <= (bounds[1][0], bounds[1][1])
}

/// `chunks --json` and `stat --json` of `pid` walked whole, and with every heap segment of 4 KiB
/// or more walked in two pieces at once (HEAPSCOPE_WALK_SPLIT): the same exit status, chunks,
/// warnings, arenas and mallinfo2. Returns what became of each second piece ("joined" or
/// "second dropped"), from the trace.
@discardableResult
func expectSameWalkInPieces(pid: Int32, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String] {
    let split = ["HEAPSCOPE_WALK_SPLIT": "4096", "HEAPSCOPE_TRACE": "1"], whole = ["HEAPSCOPE_WALK_SPLIT": "\(UInt64.max)"]
    var outcomes: [String] = []
    for (command, keys) in [(["chunks", "--json", "--no-types", "--limit", "10000000"], ["chunks", "warnings"]),
                            (["stat", "--json"], ["arenas", "mallinfo2", "warnings", "mmapped"])] {
        let a = try run(Paths.heapscope, command + [String(pid)], env: whole, timeout: 120)
        let b = try run(Paths.heapscope, command + [String(pid)], env: split, timeout: 120)
        #expect(a.status == b.status, "\(what): \(command[0]) exited \(a.status) walked whole, \(b.status) in pieces: \(b.err.suffix(2000))", sourceLocation: sourceLocation)
        let ja = try jsonObject(a.out), jb = try jsonObject(b.out)
        for key in keys {
            let x = ja[key].map { $0 as? NSObject }, y = jb[key].map { $0 as? NSObject }
            #expect(x != nil && x == y, "\(what): \(command[0]) \(key) differs walked in pieces", sourceLocation: sourceLocation)
        }
        outcomes += b.err.split(separator: "\n").filter { $0.contains("in two pieces") }.map { String($0.split(separator: ": ").last ?? "") }
    }
    return outcomes
}

@Suite("Walking glibc heaps exactly", .serialized, .timeLimit(.minutes(5)))
struct WalkTests {
    @Test("a heap segment walked in two pieces at once (as on two CPUs) gives what one walk gives", arguments: ["heap_kinds", "threads", "noncontig", "corrupt"])
    func inPieces(target: String) throws {
        let p = try TargetProcess(target)
        let outcomes = try expectSameWalkInPieces(pid: p.pid, target)
        if target != "corrupt" {
            #expect(outcomes.contains("joined"), "\(target): no segment was walked in two pieces: \(outcomes)")
        }
        #expect(p.release().ok)
    }

    @Test("one thread, every bin kind, three mmapped chunks", arguments: [
        ("heap_kinds", true, false),
        ("heap_kinds_stripped", true, false),
        ("heap_kinds", false, true),                      // libc debug info hidden: signature path
        ("heap_kinds_static", true, false),
        ("heap_kinds_static_stripped", true, true),       // static, no symbols at all
        ("heap_kinds_static_nobanner", true, false),      // static without glibc's version string: layout told apart
    ])
    func everyKind(target: String, debugInfo: Bool, signature: Bool) throws {
        let p = try TargetProcess(target)
        let r = try Inspector.inspect(pid: p.pid, options: InspectOptions(useDebugInfo: debugInfo))
        expectExact(r, p.manifest, signature: signature)
        // Each kind is really exercised by this target.
        let kinds = Set(p.manifest.freed.map(\.1))
        #expect(kinds == ["tcache", "fastbin", "unsorted", "small", "large"])
        #expect(p.manifest.mmapped.count == 3)
        #expect(p.release().ok)
    }

    @Test("8 threads, 9 arenas, a tcache per thread", arguments: [true, false])
    func threads(debugInfo: Bool) throws {
        let p = try TargetProcess("threads")
        let r = try Inspector.inspect(pid: p.pid, options: InspectOptions(useDebugInfo: debugInfo))
        expectExact(r, p.manifest, signature: !debugInfo)
        #expect(r.arenas.count == 9)
        #expect(r.arenas.dropFirst().allSatisfy { !$0.isMain && $0.segments.count == 1 })
        #expect(p.release().ok)
    }

    @Test("non-contiguous main arena: brk blocked, the arena continues in merged mmap'd regions", arguments: [true, false])
    func nonContiguous(debugInfo: Bool) throws {
        let p = try TargetProcess("noncontig")
        let r = try Inspector.inspect(pid: p.pid, options: InspectOptions(useDebugInfo: debugInfo))
        expectExact(r, p.manifest, signature: !debugInfo)
        // the brk heap plus mmap'd regions, which add up exactly to system_mem
        let main = r.arenas[0]
        #expect(main.segments.count > 2)
        #expect(main.segments.reduce(0) { $0 + ($1.end - $1.start) } == main.systemBytes)
        #expect(p.release().ok)
    }

    @Test("corrupted heap: bad size field and cyclic tcache list are named, walk finishes")
    func corrupt() throws {
        let p = try TargetProcess("corrupt")
        let r = try Inspector.inspect(pid: p.pid)
        let expected = p.manifest.corrupt
        #expect(expected.count == 2)
        for (chunk, kind) in expected {
            let hit = r.warnings.contains { $0.kind.rawValue == kind && ($0.address == chunk || kind == "list_cycle") }
            #expect(hit, "expected a \(kind) warning for 0x\(String(chunk, radix: 16)); got \(r.warnings.map(\.message))")
        }
        // The cycle is reported at one of the two chunks in that list.
        let cycle = r.warnings.first { $0.kind == .listCycle }
        let listChunks = Set(p.manifest.freed.map { $0.0 - 16 })
        #expect(cycle.flatMap(\.address).map { listChunks.contains($0) } == true)
        // Chunks beyond the damage are still found: the walk resumed.
        let t = r.chunks
        let top = (0..<t.count).filter { t.kind[$0] == GlibcKinds.top }
        #expect(top.count == 1)
        #expect(r.mallinfo2.arena == p.manifest.mallinfo2["arena"])
        #expect(p.release().ok)
    }

    @Test("a heap caught mid-update (arena mutex held): bounded retries, named reason, exact results")
    func unsettled() throws {
        let p = try TargetProcess("locked")
        let r = try Inspector.inspect(pid: p.pid, options: InspectOptions(maxAttempts: 3))
        #expect(r.attempts == 3)
        let w = r.warnings.first { $0.kind == .unsettled }
        #expect(w?.message.contains("arena 0") == true && w?.message.contains("mutex is held") == true, "\(r.warnings)")
        var outstanding: [UInt64: UInt64] = [:]
        let t = r.chunks
        for i in 0..<t.count where t.isOutstanding(i) { outstanding[t.userAddress(i)] = t.usableSize(i) }
        #expect(outstanding == p.manifest.live)
        for (name, value) in r.mallinfo2.fields { #expect(p.manifest.mallinfo2[name] == value, "mallinfo2.\(name)") }
        #expect(p.release().ok)
    }

    @Test("a static executable with neither glibc's version string nor symbols: exit 6, saying what is missing, before it is stopped")
    func staticWithoutBannerOrSymbols() throws {
        let p = try TargetProcess("heap_kinds_static_nobanner_stripped")
        let r = try run(Paths.heapscope, ["stat", String(p.pid)])
        #expect(r.status == 6, "\(r.status) \(r.err)")
        #expect(r.err.contains("has neither glibc's version string nor the symbols main_arena and mp_"), "\(r.err)")
        #expect(try ProcFS.status(pid: p.pid)["TracerPid"] == "0")
        #expect(p.release().ok)
    }
}
