import Glibc

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

/// The one error a command ends with: the exit status and the message. Every library error
/// becomes one (`InspectError.failure`, `SnapshotFile`'s and `OutputFile`'s errors through
/// `Failure.init(_:_:)`), and the command line catches it in one place: the message on standard
/// error (and as `{"error":{...}}` on standard output for --json), then the exit status.
public struct Failure: Error, Sendable, CustomStringConvertible {
    public var status: Int32
    /// What went wrong ("" when the output already said it).
    public var message: String
    /// The command's output is complete and says what went wrong (corruption found: exit 2), so
    /// --json prints no error object after it.
    public var outputComplete = false
    public init(_ status: ExitStatus, _ message: String, outputComplete: Bool = false) {
        self.status = status.rawValue; self.message = message; self.outputComplete = outputComplete
    }
    public init(status: Int32, _ message: String, outputComplete: Bool = false) {
        self.status = status; self.message = message; self.outputComplete = outputComplete
    }
    public init(_ message: String, code: Int32) { self.status = code; self.message = message }
    public var description: String { message }
}

public extension InspectError {
    var failure: Failure { Failure(status: exitCode, description) }
}

/// Whether debug files are used, as the environment says: HEAPSCOPE_NO_DEBUGINFO set to anything
/// but "" or "0" turns them off (read once, here, for every command).
public enum Environment {
    public static let debugInfoEnabled: Bool = {
        guard let v = getenv("HEAPSCOPE_NO_DEBUGINFO") else { return true }
        let s = String(cString: v)
        return s.isEmpty || s == "0"
    }()
}
