import Foundation
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
}
