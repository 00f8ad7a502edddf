import Foundation
import Glibc
import Testing

/// The fuzz harnesses (Tests/Fuzz/main.swift, the heapscope-fuzz binary) in a bounded run:
/// snapshot files, ELF/DWARF for sym and gensyms, sym's input text, core files. `make fuzz` runs them for
/// HEAPSCOPE_FUZZ_SECONDS each instead of a number of cases. A failing input is kept (the path is
/// in the failure) and becomes a regression test once fixed.
@Suite("Fuzzing", .serialized, .timeLimit(.minutes(40)))
struct FuzzTests {
    static var harness: String { "\(Paths.root)/.build/debug/heapscope-fuzz" }
    static var seconds: String? { ProcessInfo.processInfo.environment["HEAPSCOPE_FUZZ_SECONDS"] }

    /// Run the harness; a failure keeps its directory and names it.
    func fuzz(_ mode: String, cases: Int, _ inputs: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        try #require(access(FuzzTests.harness, X_OK) == 0, "\(FuzzTests.harness) is not built (swift build builds it)", sourceLocation: sourceLocation)
        let out = try temporaryDirectory("fuzz-\(mode)")
        // A bounded run: seed 1, the same cases every time. make fuzz: a new seed each run.
        let seed = FuzzTests.seconds == nil ? 1 : UInt64(Date().timeIntervalSince1970)
        let budget = (FuzzTests.seconds.map { ["--seconds", $0] } ?? ["--cases", String(cases)]) + ["--seed", String(seed)]
        let r = try run(FuzzTests.harness, budget + ["--heapscope", Paths.heapscope, "--out", out, mode] + inputs,
                        timeout: Double(FuzzTests.seconds ?? "0").map { $0 + 600 } ?? 900)
        print(String(r.out.split(separator: "\n").last ?? ""))
        #expect(r.status == 0, "heapscope-fuzz \(mode) --seed \(seed) failed (status \(r.status)): failing inputs are kept in \(out) (current: the input being tried when the harness itself crashed)\n\(r.out.suffix(3000))\n\(r.err.suffix(3000))",
                sourceLocation: sourceLocation)
        if r.status == 0 { try? FileManager.default.removeItem(atPath: out) }
    }

    @Test("snapshot files: raw mutants and mutants re-sealed inside their sections, decoded, analysed and given to heapscope")
    func snapshots() throws {
        let dir = try temporaryDirectory("fuzz-seeds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Seeds: typed chunks with contents; 9 arenas; unjoined threads and owner chains (phases 3).
        let typed = try TargetProcess("typed"), threads = try TargetProcess("threads"), phases = try TargetProcess("phases")
        defer { typed.release(); threads.release(); phases.release() }
        try phases.signal(SIGUSR1, thenWaitFor: "phase 2")
        try phases.signal(SIGUSR1, thenWaitFor: "phase 3")
        for (name, p, extra) in [("typed", typed, ["--contents"]), ("threads", threads, []), ("phases", phases, [])] {
            let r = try run(Paths.heapscope, ["snapshot", String(p.pid), "-o", "\(dir)/\(name).snap"] + extra)
            try #require(r.status == 0, "seed \(name): \(r.err)")
        }
        try fuzz("snapshot", cases: 4000, ["typed", "threads", "phases"].map { "\(dir)/\($0).snap" })
    }

    @Test("core files: mutants of a gcore core and a kernel-style one given to stat, chunks, leaks, types and sym --core")
    func cores() throws {
        let dir = try temporaryDirectory("fuzz-seeds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try TargetProcess("plain_wait")
        defer { p.release() }
        let g = try run("/usr/bin/gcore", ["-o", dir + "/g", String(p.pid)], timeout: 120)
        try #require(g.status == 0, "gcore: \(g.err.suffix(500))")
        try CoreTests.dropReadOnlyFileSegments(dir + "/g.\(p.pid)", to: dir + "/kernel-style")
        try fuzz("core", cases: 600, [dir + "/g.\(p.pid)", dir + "/kernel-style"])
    }

    @Test("ELF and DWARF: mutants of a binary with DWARF given to sym --elf and gensyms --elf")
    func elf() throws {
        try fuzz("elf", cases: 300, [Paths.target("symbols")])
    }

    @Test("sym's input: batches of garbage lines (huge numbers, non-UTF-8 bytes, 1 MB lines) in every output format")
    func text() throws {
        try fuzz("text", cases: 40, [Paths.target("symbols")])
    }
}
