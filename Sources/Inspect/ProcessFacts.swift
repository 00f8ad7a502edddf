import ProcessAccess
import Symbols

/// What is known of the process itself, read before it is stopped (the first part of the process
/// image every analysis takes): nothing after the detach reads /proc/PID for these.
public struct ProcessFacts: Sendable {
    public var pid: Int32
    public var exe: String
    /// Clock ticks after boot (/proc/PID/stat field 22): with the pid, names the process.
    public var startTime: UInt64?
    /// The build-id of every mapped file (by its path), to tell later whether the same code ran.
    public var buildIDs: [(path: String, id: String)]

    /// Read them through `access` (the pid, or a live thread's id when the leader has exited).
    static func read(pid: Int32, access: Int32, maps: [Mapping]) -> ProcessFacts {
        var ids: [(path: String, id: String)] = []
        var seen: Set<String> = []
        for m in maps where m.offset == 0 && m.path.hasPrefix("/") && seen.insert(m.path).inserted {
            if let id = elfBuildID(path: ProcFS.mappedFilePath(pid: access, mapping: m)) { ids.append((m.path, id)) }
        }
        return ProcessFacts(pid: pid, exe: ProcFS.exePath(pid: access) ?? "", startTime: ProcFS.startTime(pid: access), buildIDs: ids)
    }
}
