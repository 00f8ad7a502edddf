import Foundation
import Inspect
import Testing

/// The pipeline runs one way: what analyses the copy after the detach never goes back to the
/// process. Checked twice: every command that stops the target runs under strace, and after its
/// last PTRACE_DETACH no system call names the target (no /proc/PID, no process_vm_readv, no
/// symbol session opened on it); and a lint over the sources that run after the detach
/// (Analysis, Snapshot, and Inspect's analyses) finds no /proc read.
@Suite("Lint", .serialized)
struct LintTests {
    @Test("after the detach, nothing reads the target (strace of every command that stops it)")
    func nothingAfterDetach() throws {
        let p = try TargetProcess("typed")
        defer { p.release() }
        let dir = try temporaryDirectory("lint")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let address = "0x" + String(try #require(p.manifest.live.keys.min()), radix: 16)
        let pid = String(p.pid)
        let commands: [[String]] = [["stat", pid], ["chunks", pid], ["leaks", pid, "--show", "reachable"], ["types", pid],
                                    ["why", pid, address], ["show", pid, address], ["snapshot", pid, "-o", dir + "/s", "--contents"]]
        for c in commands {
            let trace = dir + "/trace"
            let r = try run("/usr/bin/strace", ["-f", "-qq", "-o", trace, "-e",
                                                "trace=openat,open,ptrace,process_vm_readv,process_vm_writev,readlink,readlinkat,access,faccessat,faccessat2,newfstatat,statx,execve",
                                                Paths.heapscope] + c)
            #expect(r.status == 0, "\(c): \(r.err)")
            let lines = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n")
            let last = try #require(lines.lastIndex { $0.contains("PTRACE_DETACH") }, "\(c): no PTRACE_DETACH in the trace")
            let after = lines[(last + 1)...].filter { $0.contains("/proc/\(pid)/") || $0.contains("process_vm_readv(\(pid),") || $0.contains("(PTRACE_") }
            #expect(after.isEmpty, "\(c.joined(separator: " ")) reads the target after the detach:\n\(after.prefix(10).joined(separator: "\n"))")
        }
    }

    @Test("no /proc read in the code that runs after the detach")
    func noProcAfterDetach() throws {
        var files: [String] = []
        for dir in ["Sources/Analysis", "Sources/Snapshot"] {
            for f in try FileManager.default.contentsOfDirectory(atPath: "\(Paths.root)/\(dir)") where f.hasSuffix(".swift") { files.append("\(dir)/\(f)") }
        }
        files += ["Leaks", "Types", "Snapshot", "Diff", "Profile", "Watch", "Why", "Files"].map { "Sources/Inspect/\($0).swift" }
        var offenders: [String] = []
        for f in files {
            let text = try String(contentsOfFile: "\(Paths.root)/\(f)", encoding: .utf8)
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let code = line.components(separatedBy: "//")[0]
                if code.contains("ProcFS.") || code.contains("\"/proc/") { offenders.append("\(f):\(n + 1): \(line.trimmingCharacters(in: .whitespaces))") }
            }
        }
        #expect(files.count > 10)
        #expect(offenders.isEmpty, "reads of /proc after the detach:\n\(offenders.joined(separator: "\n"))")
    }

    @Test("the command line is thin: it imports the library only through Inspect, Output and HeapModel's result types, and ends every failure in one place")
    func thinCLI() throws {
        let dir = "\(Paths.root)/Sources/heapscope"
        var imports = Set<String>(), lines = 0, exits: [String] = []
        for f in try FileManager.default.contentsOfDirectory(atPath: dir) where f.hasSuffix(".swift") {
            let text = try String(contentsOfFile: "\(dir)/\(f)", encoding: .utf8)
            let ls = text.split(separator: "\n", omittingEmptySubsequences: false)
            lines += ls.count
            for (n, l) in ls.enumerated() {
                if l.hasPrefix("import ") { imports.insert(String(l.dropFirst(7))) }
                if l.contains("ExitCode(") && !l.contains("exit(withError: ExitCode(f.status))") { exits.append("\(f):\(n + 1): \(l)") }
            }
        }
        #expect(imports.isSubset(of: ["ArgumentParser", "Glibc", "HeapModel", "Inspect", "Output"]), "the CLI imports \(imports.sorted())")
        #expect(lines < 600, "the CLI has \(lines) lines")
        #expect(exits.isEmpty, "exit codes chosen outside Failure:\n\(exits.joined(separator: "\n"))")
        let package = try String(contentsOfFile: "\(Paths.root)/Package.swift", encoding: .utf8)
        let cli = try #require(package.components(separatedBy: ".executableTarget(name: \"heapscope\", dependencies: [").dropFirst().first?.components(separatedBy: "]").first)
        #expect(cli.contains("\"Inspect\"") && !cli.contains("\"Symbols\"") && !cli.contains("\"Analysis\"") && !cli.contains("\"ProcessAccess\"") && !cli.contains("\"Snapshot\""), "\(cli)")
    }

    @Test("glibc's knowledge (bin names, layouts, malloc_trim's arithmetic) is only under Sources/GlibcMalloc; others reach it through the allocator seam")
    func glibcStaysInItsModule() throws {
        // Code (not comments or help text) naming glibc's kinds or internals; and who may import the walker:
        // Inspect to pick the allocator, Snapshot to read files of format 1 (which predate recorded kinds).
        let words = ["\"tcache\"", "\"fastbin\"", "\"unsorted\"", "\"small\"", "\"large\"", "GlibcLayout", "mp_.", "MALLOC_ALIGNMENT", "MINSIZE", "trim_threshold", "pagesize - 1"]
        let importers: Set<String> = ["Sources/Inspect/Inspect.swift", "Sources/Snapshot/Format.swift"]
        var offenders: [String] = []
        let sources = "\(Paths.root)/Sources"
        for dir in try FileManager.default.contentsOfDirectory(atPath: sources) where dir != "GlibcMalloc" {
            guard let files = try? FileManager.default.contentsOfDirectory(atPath: "\(sources)/\(dir)") else { continue }
            for f in files where f.hasSuffix(".swift") {
                let rel = "Sources/\(dir)/\(f)"
                let text = try String(contentsOfFile: "\(Paths.root)/\(rel)", encoding: .utf8)
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let code = line.components(separatedBy: "//")[0]
                    if code.contains("import GlibcMalloc") && !importers.contains(rel) { offenders.append("\(rel):\(n + 1): \(line)") }
                    for w in words where code.contains(w) { offenders.append("\(rel):\(n + 1): \(line.trimmingCharacters(in: .whitespaces))") }
                }
            }
        }
        #expect(offenders.isEmpty, "glibc's internals outside GlibcMalloc:\n\(offenders.joined(separator: "\n"))")
    }

    @Test("the exit codes: one table (ExitStatus) in --help and in the README")
    func exitCodes() throws {
        let readme = try String(contentsOfFile: "\(Paths.root)/README.md", encoding: .utf8)
        let section = try #require(readme.components(separatedBy: "### Exit codes").dropFirst().first?.components(separatedBy: "\n### ").first)
        let codes = section.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| code") }
            .map { String($0.dropFirst(2).prefix { $0 != " " }) }
        #expect(codes == ExitStatus.allCases.map { String($0.rawValue) } + ["128+N"], "README's table: \(codes)")
        let help = try run(Paths.heapscope, ["--help"])
        let flat = help.out.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
        #expect(flat.contains(ExitStatus.helpText), "--help lacks the exit-code table")
    }
}
