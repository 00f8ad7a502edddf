import Foundation
import Glibc
import GlibcMalloc
import HeapModel
import Inspect
import ProcessAccess
import Symbols
import Testing

/// The walk on other glibc versions: Debian roots built by `make matrix` (Tests/matrix/make-root.sh)
/// under $HEAPSCOPE_ROOTS. In each, the TestTargets are compiled with the root's own gcc against
/// its own glibc, run there with chroot, and inspected from the host: every chunk and mallinfo2
/// against the target's manifest, with the root's libc debug file (found through /proc/PID/root)
/// and without it (the signature path).
@Suite("glibc matrix", .serialized, .timeLimit(.minutes(10)))
struct MatrixTests {
    static let roots: [(name: String, glibc: String)] = [("bullseye", "2.31"), ("trixie", "2.41"), ("sid", "2.43"), ("experimental", "2.44")]
    /// From 2.43 a tcache bin holds 16 chunks by default; the targets' notes assume glibc's 7 before.
    static func env(_ name: String) -> [String] {
        ["sid", "experimental"].contains(name) ? ["GLIBC_TUNABLES=glibc.malloc.tcache_count=7"] : []
    }
    static let rootsDir = ProcessInfo.processInfo.environment["HEAPSCOPE_ROOTS"] ?? "/var/cache/heapscope/roots"

    /// The root, ready: /proc mounted, the targets built into /tmp/heapscope-matrix inside it
    /// (dynamic; static; static without glibc's version string).
    func prepare(_ name: String) throws -> String {
        let dir = "\(MatrixTests.rootsDir)/\(name)"
        try #require(access("\(dir)/usr/bin/gcc", X_OK) == 0, "the Debian \(name) root is missing in \(MatrixTests.rootsDir): run make matrix (make test does)")
        if access("\(dir)/proc/self/maps", R_OK) != 0 {
            let m = try run("/bin/mount", ["-t", "proc", "proc", "\(dir)/proc"])
            try #require(m.status == 0, "cannot mount /proc in \(dir): \(m.err)")
        }
        let build = "\(dir)/tmp/heapscope-matrix"
        try? FileManager.default.createDirectory(atPath: build, withIntermediateDirectories: true)
        for f in ["manifest.h", "heap_kinds.c", "threads.c", "leaks.c", "phases.c"] {
            let dst = "\(build)/\(f)"
            try? FileManager.default.removeItem(atPath: dst)
            try FileManager.default.copyItem(atPath: "\(Paths.root)/TestTargets/\(f)", toPath: dst)
        }
        let wrap = ["-DWRAP", "-Wl,--wrap=malloc,--wrap=free,--wrap=calloc,--wrap=realloc,--wrap=memalign"]
        let builds: [(String, String, [String])] = [
            ("heap_kinds", "heap_kinds", ["-DINTERPOSE"]), ("threads", "threads", ["-DINTERPOSE"]), ("leaks", "leaks", ["-DINTERPOSE"]),
            ("phases", "phases", []),
            ("heap_kinds_static", "heap_kinds", ["-static"] + wrap),
            // as most static programs: without glibc's version string
            ("heap_kinds_static_nobanner", "heap_kinds", ["-static", "-DHS_NO_BANNER"] + wrap),
        ]
        for (out, src, flags) in builds {
            let r = try run("/usr/sbin/chroot", [dir, "gcc", "-g", "-O0"] + flags + ["-o", "/tmp/heapscope-matrix/\(out)",
                                                 "/tmp/heapscope-matrix/\(src).c", "-lpthread"], timeout: 120)
            try #require(r.status == 0, "gcc in the \(name) root failed for \(out): \(r.err)")
        }
        return dir
    }

    @Test("every chunk and mallinfo2 exactly, with the root's libc debug file and by signature", arguments: MatrixTests.roots.map(\.name))
    func walk(root name: String) throws {
        let dir = try prepare(name)
        let version = MatrixTests.roots.first { $0.name == name }!.glibc
        for target in ["heap_kinds", "threads", "heap_kinds_static", "heap_kinds_static_nobanner"] {
            let p = try TargetProcess("/tmp/heapscope-matrix/\(target)", env: MatrixTests.env(name), root: dir)
            #expect(p.manifest.glibc == version, "\(name) runs glibc \(p.manifest.glibc)")
            let withDebug = try Inspector.inspect(pid: p.pid, options: InspectOptions(useDebugInfo: true))
            expectExact(withDebug, p.manifest, signature: false)
            if !target.contains("static") {
                #expect(withDebug.discovery.contains("debug file \(dir)/usr/lib/debug/.build-id/"), "\(name) \(target): \(withDebug.discovery)")
                #expect(withDebug.discovery.hasSuffix("; layouts from DWARF"), "\(name) \(target): \(withDebug.discovery)")
            }
            #expect(withDebug.discovery.contains("by layout") == target.hasSuffix("nobanner"), "\(withDebug.discovery)")
            // (a static executable keeps its symbol table: its malloc state is found from it either way)
            let bySignature = try Inspector.inspect(pid: p.pid, options: InspectOptions(useDebugInfo: false))
            expectExact(bySignature, p.manifest, signature: !target.contains("static"))
            if target == "heap_kinds" {
                // (2.43 removed fastbins)
                #expect(Set(p.manifest.freed.map(\.1)) == (version >= "2.43" ? ["tcache", "unsorted", "small", "large"] : ["tcache", "fastbin", "unsorted", "small", "large"]))
            }
            #expect(p.release().ok)
        }
    }

    @Test("every leak class exactly, as on the host (TestTargets/leaks.c built in the root)", arguments: MatrixTests.roots.map(\.name))
    func leaks(root name: String) throws {
        let dir = try prepare(name)
        let p = try TargetProcess("/tmp/heapscope-matrix/leaks", env: MatrixTests.env(name), root: dir)
        try LeakTests().check(p, anonymousRoots: true)
        #expect(p.release().ok)
    }

    @Test("threads that exited without being joined: their stacks found exactly (TestTargets/phases.c, phase 3)", arguments: MatrixTests.roots.map(\.name))
    func exitedThreads(root name: String) throws {
        let dir = try prepare(name)
        let p = try TargetProcess("/tmp/heapscope-matrix/phases", env: MatrixTests.env(name), root: dir)
        try p.signal(SIGUSR1, thenWaitFor: "phase 2")
        try p.signal(SIGUSR1, thenWaitFor: "phase 3")
        let notes = PhaseNotes(p.manifestText)
        #expect(notes.exited.count == 3)
        // (from 2.43 neighbouring thread stacks share one mapping: guard pages are made by madvise)
        let r = try Inspector.inspect(pid: p.pid)
        let ex = try #require(r.heap.exitedThreads, "\(name): exited threads not recognised")
        #expect(ex.map { "\($0.descriptor) \($0.start) \($0.end) \($0.state)" }.sorted()
                == notes.exited.map { "\($0.descriptor) \($0.start) \($0.end) unjoined" }.sorted(), "\(name)")
        #expect(p.release().ok)
    }

    /// Every offset of the built-in table against libc's own DWARF (its debug file from libc6-dbg),
    /// for this machine's glibc and every root's.
    @Test("the layout tables equal what libc's DWARF says, for every glibc the tests run")
    func tablesEqualDWARF() throws {
        for (name, version) in [("host", "2.36")] + MatrixTests.roots.map({ ($0.name, $0.glibc) }) {
            let root = name == "host" ? "" : "\(MatrixTests.rootsDir)/\(name)"
            let table = try #require(GlibcLayout(version: version))
            let structs = try MatrixTests.libcStructs(root: root)
            var fromDWARF = table
            let missing = fromDWARF.apply(structs)
            #expect(missing.isEmpty, "\(name): libc's DWARF lacks \(missing)")
            #expect(fromDWARF.source == "DWARF")
            let t = MatrixTests.offsets(table), d = MatrixTests.offsets(fromDWARF)
            #expect(t == d, "\(name) (glibc \(version)): table and DWARF differ in \(t.filter { d[$0.key] != $0.value }.map { "\($0.key): table \($0.value), DWARF \(d[$0.key] ?? "-")" })")
        }
        // A version past the tables is laid out by DWARF alone: 2.44's DWARF read as if it were 2.45.
        var newer = try #require(GlibcLayout.newer(version: "2.45"))
        #expect(newer.source == "none")
        #expect(newer.apply(try MatrixTests.libcStructs(root: "\(MatrixTests.rootsDir)/experimental")).isEmpty)
        #expect(newer.source == "DWARF" && MatrixTests.offsets(newer) == MatrixTests.offsets(GlibcLayout(version: "2.44")!))
        #expect(GlibcLayout(version: "2.45") == nil)
    }

    /// The structs GlibcLayout reads, from the DWARF of libc's debug file in `root` ("" = this machine).
    static func libcStructs(root: String) throws -> [String: StructLayout] {
        let libc = "\(root)/lib/x86_64-linux-gnu/libc.so.6"
        let id = try #require(elfBuildID(path: libc), "no build-id in \(libc)")
        let debug = "\(root)/usr/lib/debug/.build-id/\(id.prefix(2))/\(id.dropFirst(2)).debug"
        try #require(access(debug, R_OK) == 0, "libc6-dbg is missing: \(debug)")
        let session = try SymbolSession(file: debug, useDebugInfo: true)
        let structs = session.structLayouts(named: GlibcLayout.dwarfStructs)
        #expect(Set(structs.keys) == GlibcLayout.dwarfStructs, "\(debug) defines \(structs.keys.sorted())")
        return structs
    }

    /// Every offset and size of a layout, by name (not its version or where it came from).
    static func offsets(_ l: GlibcLayout) -> [String: String] {
        var out: [String: String] = [:]
        for c in Mirror(reflecting: l).children {
            guard let label = c.label, !["major", "minor", "source", "inferredRange"].contains(label) else { continue }
            out[label] = "\(c.value)"
        }
        return out
    }

    /// A container as `unshare` makes one: its own PID namespace (the target is pid 1 there, /proc
    /// mounted anew), mount namespace and root (trixie's: another glibc, its own libc debug file).
    /// heapscope inspects it by its host pid, reading its files through /proc/PID/root.
    @Test("a target in its own PID and mount namespace and root, by its host pid: every chunk exactly")
    func container() throws {
        let dir = try prepare("trixie")
        let p = try TargetProcess("/tmp/heapscope-matrix/heap_kinds",
                                  launcher: ["/usr/bin/unshare", "--pid", "--fork", "--mount", "--mount-proc", "--root=\(dir)", "/tmp/heapscope-matrix/heap_kinds"],
                                  root: dir)
        #expect(p.manifest.pid == 1, "the target is pid 1 in its namespace")
        // The target is unshare's child.
        let children = try String(contentsOfFile: "/proc/\(p.pid)/task/\(p.pid)/children", encoding: .utf8)
        let host = try #require(Int32(children.trimmingCharacters(in: .whitespaces)), "unshare's children: '\(children)'")
        let status = try String(contentsOfFile: "/proc/\(host)/status", encoding: .utf8)
        #expect(status.contains("NSpid:\t\(host)\t1"), "\(status)")
        for debugInfo in [true, false] {
            let r = try Inspector.inspect(pid: host, options: InspectOptions(useDebugInfo: debugInfo))
            expectExact(r, p.manifest, signature: !debugInfo)
            if debugInfo { #expect(r.discovery.contains("debug file \(dir)/usr/lib/debug/.build-id/"), "\(r.discovery)") }
        }
        let stat = try run(Paths.heapscope, ["stat", "--json", String(host)])
        #expect(stat.status == 0, "\(stat.err)")
        #expect(try jsonObject(stat.out)["glibc_version"] as? String == "2.41")
        #expect(p.release().ok)
    }

    /// `make dist`'s tarball, unpacked with the root's own tar in a root that has no Swift, run there
    /// (chroot) against a target built and running in that root: mallinfo2 exactly as the target's own.
    @Test("the make dist binary runs in a root without Swift", arguments: ["trixie", "sid"])
    func dist(root name: String) throws {
        let dir = try prepare(name)
        let tarballs = (try? FileManager.default.contentsOfDirectory(atPath: "\(Paths.root)/.build/dist"))?.filter { $0.hasSuffix("-x86_64-linux.tar.gz") } ?? []
        let tarball = try #require(tarballs.count == 1 ? tarballs[0] : nil, "expected one tarball in .build/dist, found \(tarballs): run make dist (make test does)")
        // No Swift runtime anywhere in the root: what runs there is the tarball alone.
        let swiftLibs = try run("/usr/bin/find", [dir, "-xdev", "-name", "libswiftCore*"])
        #expect(swiftLibs.status == 0 && swiftLibs.out.isEmpty, "the \(name) root has a Swift runtime: \(swiftLibs.out)")
        let unpack = try temporaryDirectory("dist", under: dir + "/tmp")
        defer { try? FileManager.default.removeItem(atPath: unpack) }
        let inside = String(unpack.dropFirst(dir.count))
        try FileManager.default.copyItem(atPath: "\(Paths.root)/.build/dist/\(tarball)", toPath: "\(unpack)/\(tarball)")
        let tar = try run("/usr/sbin/chroot", [dir, "tar", "-C", inside, "-xzf", "\(inside)/\(tarball)"])
        try #require(tar.status == 0, "tar in \(name): \(tar.err)")
        let binary = "\(inside)/\(tarball.replacingOccurrences(of: ".tar.gz", with: ""))/bin/heapscope"
        let version = try run("/usr/sbin/chroot", [dir, binary, "--version"])
        #expect(version.status == 0 && version.out.hasPrefix("heapscope "), "\(name): \(version.status) \(version.out) \(version.err)")

        let p = try TargetProcess("/tmp/heapscope-matrix/heap_kinds", env: MatrixTests.env(name), root: dir)
        let stat = try run("/usr/sbin/chroot", [dir, binary, "stat", "--json", String(p.pid)])
        try #require(stat.status == 0, "\(name): heapscope stat exited \(stat.status): \(stat.err)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(stat.out.utf8)) as? [String: Any])
        #expect(json["glibc_version"] as? String == p.manifest.glibc)
        let mallinfo = try #require(json["mallinfo2"] as? [String: Any])
        for (field, value) in p.manifest.mallinfo2 {
            #expect((mallinfo[field] as? NSNumber)?.uint64Value == value, "\(name): mallinfo2.\(field) \(mallinfo[field] ?? "missing") != \(value)")
        }
        #expect((json["discovery"] as? String)?.contains("debug file /usr/lib/debug/.build-id/") == true, "\(json["discovery"] ?? "")")
        #expect(p.release().ok)
    }
}
