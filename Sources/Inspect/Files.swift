import Glibc
import Snapshot

/// A snapshot written to a file: what `heapscope snapshot` reports.
public struct SnapshotWritten {
    public var snapshot: Snapshot
    public var path: String
    /// The file's size in bytes.
    public var fileBytes: UInt64
    public var contents: Bool
    /// Seconds to inspect the target, and to write the file.
    public var inspectSeconds: Double, writeSeconds: Double
}

/// Two snapshot files compared (`heapscope diff`).
public struct DiffResult {
    public var diff: SnapshotDiff
    public var a: Snapshot, b: Snapshot
    public var pathA: String, pathB: String
}

extension Inspector {
    /// An output file checked before any work (OutputFile's rules: mode 0600, no symbolic link
    /// unless `follow`); exit 1 with the reason if refused.
    static func checkedOutput(_ path: String, follow: Bool) throws(Failure) -> OutputFile {
        do { return try OutputFile(path, follow: follow) } catch { throw Failure(.otherError, error.description) }
    }

    /// Inspect `target` as `snapshot` does and write the file (and a pprof profile with `pprof`).
    /// Where the files go is checked before the target is stopped. `inspect` runs the inspection
    /// (the command line's progress and error handling around `Inspector.snapshot`).
    public static func writeSnapshot(to path: String, pprof: String?, follow: Bool, contents: Bool,
                                     progress: ((String) -> Void)? = nil, inspect: () throws -> Snapshot) throws -> SnapshotWritten {
        let file = try checkedOutput(path, follow: follow)
        let pprofFile = try pprof.map { p throws(Failure) in try checkedOutput(p, follow: follow) }
        let t0 = monotonicSeconds()
        let s = try inspect()
        let t1 = monotonicSeconds()
        var t2 = t1
        progress?("writing \(path)")
        do {
            try SnapshotFile.write(s, to: file)
            t2 = monotonicSeconds()
            if let pprofFile { try PprofProfile(heapOf: s).write(to: pprofFile) }
        } catch {
            throw Failure(.otherError, error.description)
        }
        var st = stat()
        let size = stat(path, &st) == 0 ? UInt64(st.st_size) : 0
        return SnapshotWritten(snapshot: s, path: path, fileBytes: size, contents: contents, inspectSeconds: t1 - t0, writeSeconds: t2 - t1)
    }

    /// Compare two snapshot files; with `pprof`, also write B minus A per owner chain as a profile.
    public static func diff(_ a: String, _ b: String, by: SnapshotDiff.Key, pprof: String?, follow: Bool) throws(Failure) -> DiffResult {
        let pprofFile = try pprof.map { p throws(Failure) in try checkedOutput(p, follow: follow) }
        let sa: Snapshot, sb: Snapshot
        do { sa = try readSnapshot(a); sb = try readSnapshot(b) } catch { throw error.failure }
        let d = SnapshotDiff(sa, sb, by: by)
        if let pprofFile {
            do { try PprofProfile(heapOf: sb, base: sa, types: (d.typesB, d.typesA)).write(to: pprofFile) } catch {
                throw Failure(.otherError, error.description)
            }
        }
        return DiffResult(diff: d, a: sa, b: sb, pathA: a, pathB: b)
    }
}
