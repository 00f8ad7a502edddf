import Foundation
import Inspect
import Testing

/// The pipeline runs one way: what analyses the copy after the detach never goes back to the
/// process. A lint over the sources that run after the detach (Analysis, Snapshot, and Inspect's
/// analyses): no /proc read. (Their symbol sessions on the pid are the next step, issue 15.)
@Suite("Lint")
struct LintTests {
    @Test("no /proc read in the code that runs after the detach")
    func noProcAfterDetach() throws {
        var files: [String] = []
        for dir in ["Sources/Analysis", "Sources/Snapshot"] {
            for f in try FileManager.default.contentsOfDirectory(atPath: "\(Paths.root)/\(dir)") where f.hasSuffix(".swift") { files.append("\(dir)/\(f)") }
        }
        files += ["Leaks", "Types", "Snapshot", "Diff", "Profile", "Watch"].map { "Sources/Inspect/\($0).swift" }
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
