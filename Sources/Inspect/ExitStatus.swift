/// heapscope's exit codes: the one table every command, `--help` and the README take them from
/// (a test checks the README's table against it).
public enum ExitStatus: Int32, CaseIterable, Sendable {
    case success = 0
    case otherError = 1
    case corrupted = 2
    case noSuchProcess = 3
    case permissionDenied = 4
    case targetExited = 5
    case unsupported = 6
    case mallocNotFound = 7
    case badInputFile = 8
    case stopBudget = 9
    case usage = 64

    /// 128 + N: heapscope got signal N (the target was detached first).
    public static func signal(_ n: Int32) -> Int32 { 128 + n }

    /// What the code means, in a few words (for --help).
    public var summary: String {
        switch self {
        case .success: return "success"
        case .otherError: return "other error (also: output that could not be written, an output file refused)"
        case .corrupted: return "finished, but heap corruption was found"
        case .noSuchProcess: return "no such process"
        case .permissionDenied: return "permission denied (the message says why), or not stopped because that could harm the target"
        case .targetExited: return "target exited during inspection"
        case .unsupported: return "target does not use (a supported) glibc malloc (told before it is stopped)"
        case .mallocNotFound: return "malloc state not found or not initialised"
        case .badInputFile: return "a snapshot or core file that cannot be read (truncated, corrupted, foreign, newer format, not a regular file)"
        case .stopBudget: return "the target could not be inspected within --max-stop (a thread would not stop, or the copy needed longer): it was released, and the message says for how long it was stopped"
        case .usage: return "usage error"
        }
    }

    /// The table as one line of text, as --help prints it.
    public static var helpText: String {
        "Exit codes: " + allCases.map { "\($0.rawValue) \($0.summary)" }.joined(separator: "; ")
            + "; 128+N interrupted by signal N (the target is detached first)."
    }
}
