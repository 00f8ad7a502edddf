import Foundation
import Glibc
import ProcessAccess
import Symbols
import Testing

/// The DWARF type reader on DWARF nobody here wrote: the declared type of every global of every
/// ELF file with debug info on the machine (every separate debug file in /usr/lib/debug/.build-id
/// — libc, python3 with python3-dbg, whatever else is installed —, those of the glibc matrix's
/// Debian roots, and every TestTargets program).
/// A crash (a Swift trap) ends the test run; odd DIEs are counted as unknown types.
@Suite("DWARF sweep", .serialized, .timeLimit(.minutes(10)))
struct DwarfSweepTests {
    static func files() -> [String] {
        var out: [String] = []
        // (and those of the glibc matrix's Debian roots: other gcc versions, DWARF 5)
        for debug in ["/usr/lib/debug/.build-id"] + MatrixTests.roots.map({ "\(MatrixTests.rootsDir)/\($0.name)/usr/lib/debug/.build-id" }) {
        for dir in (try? FileManager.default.contentsOfDirectory(atPath: debug)) ?? [] {
            for f in (try? FileManager.default.contentsOfDirectory(atPath: "\(debug)/\(dir)")) ?? [] where f.hasSuffix(".debug") {
                var st = stat()
                if lstat("\(debug)/\(dir)/\(f)", &st) == 0, st.st_mode & S_IFMT == S_IFREG { out.append("\(debug)/\(dir)/\(f)") }
            }
        }
        }
        let tt = Paths.root + "/TestTargets/build"
        for f in (try? FileManager.default.contentsOfDirectory(atPath: tt)) ?? [] where ProcFS.elfClass("\(tt)/\(f)") != nil {
            out.append("\(tt)/\(f)")
        }
        return out.sorted()
    }

    @Test("every global's declared type of every ELF file with debug info: no crash; unknown DIEs counted")
    func sweep() throws {
        let files = DwarfSweepTests.files()
        #expect(files.contains { $0.contains("/usr/lib/debug/.build-id/") }, "no separate debug files: libc6-dbg and python3-dbg are installed by make deps")
        var python = false
        var read = 0, roots = 0, types = 0, unknown = 0, untyped = 0
        for f in files {
            guard let s = try? SymbolSession(file: f, useDebugInfo: true) else { continue }
            let d = s.declaredTypes(threads: [], classNames: [], read: { _ in nil })
            guard !d.modules.isEmpty else { continue }
            read += 1
            roots += d.roots.count
            types += d.table.count
            unknown += d.unknownTypes
            untyped += d.untypedVariables
            if d.roots.contains(where: { $0.name.hasPrefix("_PyRuntime") }) { python = true }
        }
        print("DWARF sweep: \(read) of \(files.count) ELF files with DWARF read; \(roots) globals typed, \(types) types read, \(unknown) DIEs of unknown shape, \(untyped) globals without a readable type")
        #expect(read >= 20, "only \(read) files with DWARF")
        #expect(python, "python3's debug file (python3-dbg) was not among them")
        for r in MatrixTests.roots {
            #expect(files.contains { $0.hasPrefix("\(MatrixTests.rootsDir)/\(r.name)/usr/lib/debug/") }, "no debug files of the \(r.name) root: run make matrix (make test does)")
        }
        #expect(roots > 10_000)
    }
}
