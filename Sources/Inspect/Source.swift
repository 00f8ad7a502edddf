import Glibc
import ProcessAccess
import Symbols

/// Where a process image comes from: a live process (read through /proc and ptrace, before and
/// while it is stopped) or a core file (read from the file; the process may be long gone).
/// Everything `prepare` needs to learn about the target goes through here.
enum Source {
    case live(pid: Int32)
    case core(CoreFile)

    var pid: Int32 {
        switch self {
        case .live(let pid): return pid
        case .core(let c): return c.pid
        }
    }

    /// The mappings, as /proc/PID/maps lists them (for a core: as its segments and NT_FILE give them).
    func maps() throws(InspectError) -> [Mapping] {
        switch self {
        case .live(let pid):
            guard ProcFS.exists(pid: pid) else { throw .process(.noSuchProcess(pid: pid)) }
            do { return try ProcFS.maps(pid: pid) } catch {
                if case .system(_, _, let e) = error, e == EACCES || e == EPERM {
                    throw .process(.permissionDenied(pid: pid, reason: explainPermission(pid: pid)))
                }
                throw .process(error)
            }
        case .core(let c): return c.maps
        }
    }

    /// The executable's path as the process named it ("" if unknown).
    var executable: String {
        switch self {
        case .live(let pid): return ProcFS.exePath(pid: pid) ?? ""
        case .core(let c): return c.executable ?? ""
        }
    }

    /// A path that opens the file mapped at `m`: for a live process the mapped file itself (it may
    /// have been replaced or live in a container's root); for a core the path it recorded.
    func filePath(_ m: Mapping) -> String {
        switch self {
        case .live(let pid): return ProcFS.mappedFilePath(pid: pid, mapping: m)
        case .core: return m.path.hasSuffix(" (deleted)") ? String(m.path.dropLast(10)) : m.path
        }
    }

    var remote: RemoteMemory {
        switch self {
        case .live(let pid): return RemoteMemory(pid: pid)
        case .core(let c): return RemoteMemory(core: c)
        }
    }

    /// The image's one symbol session.
    func symbols(useDebugInfo: Bool) throws(SymbolsError) -> SymbolSession {
        switch self {
        case .live(let pid): return try SymbolSession(pid: pid, useDebugInfo: useDebugInfo)
        case .core(let c): return try SymbolSession(core: c, useDebugInfo: useDebugInfo)
        }
    }
}
