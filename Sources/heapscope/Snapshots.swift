import ArgumentParser
import Inspect
import Output

struct SnapshotCommand: ParsableCommand, TargetCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Save one inspection to a file: heap walk, arenas, mallinfo2, threads, every chunk with its leak class, type and owner.",
        discussion: """
        One pause, as `leaks`. The file (mode 0600) holds no heap contents unless --contents is \
        given: then every outstanding chunk's bytes too (secrets!). stat, chunks, types, leaks, \
        why and show read the file instead of a process (show needs --contents); diff compares \
        two files. --pprof also writes a gzipped pprof heap profile. Format: README "Snapshot files".
        """ + Examples.snapshot)
    @OptionGroup var target: TargetOptions
    @Option(name: .shortAndLong, help: "The file to write.") var output: String
    @Flag(help: "Also save the contents of every outstanding chunk.") var contents = false
    @Option(help: ArgumentHelp("Also write the heap as a gzipped pprof profile (inuse_objects, inuse_space; stacks = owner chains).", valueName: "file"))
    var pprof: String?
    @Flag(help: "Write through a symbolic link given as --output or --pprof (refused otherwise).") var follow = false

    func run() throws {
        if target.isSnapshot { throw ValidationError("snapshot needs a live process (a PID) or a core file; '\(target.target)' is neither. Snapshots give stat, chunks, types, leaks, why, show and diff") }
        let withContents = contents
        let w = try Inspector.writeSnapshot(to: output, pprof: pprof, follow: follow, contents: contents,
                                            progress: target.showsProgress ? { Terminal.progress($0) } : nil) {
            try target.attach { t, o in var o = o; o.accountMemory = true; return try Inspector.snapshot(t, options: o, contents: withContents) }
        }
        print(SnapshotFormat.written(w, json: target.json), terminator: "")
        // (the file is written, with the warnings in it)
        try finish(w.snapshot.report, say: true)
    }
}

struct Diff: ParsableCommand, JSONCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two snapshots: what grew, by type, size, owner or state; chunks new, gone and surviving.",
        discussion: """
        Groups of outstanding chunks (in_use and mmapped) with their count and bytes in A, in B \
        and the change, largest growth first. A survivor is a chunk at the same address with the \
        same size and type in both (and, when both snapshots hold contents, the same bytes; \
        otherwise it is counted as changed). Causes: in-use growth split into reachable and \
        lost, free memory malloc keeps (caches, free lists, top) and what malloc_trim(0) would return, \
        mmapped chunks, arenas, threads, and threads that exited without being joined (their \
        stacks and heap blocks stay until pthread_join).
        """ + Examples.diff)
    @Argument(help: "The older snapshot file.") var a: String
    @Argument(help: "The newer snapshot file.") var b: String
    @Option(help: "Group by type, size, owner or state.") var by: SnapshotDiff.Key = .type
    @Option(help: "Print at most this many groups.") var limit = 30
    @Flag(help: "Print JSON instead of text.") var json = false
    @Option(help: ArgumentHelp("Also write B minus A per owner chain as a gzipped pprof profile (what pprof -diff_base shows).", valueName: "file"))
    var pprof: String?
    @Flag(help: "Write through a symbolic link given as --pprof (refused otherwise).") var follow = false

    func validate() throws {
        if limit < 0 { throw ValidationError("--limit must be >= 0") }
    }

    var wantsJSON: Bool { json }

    func run() throws {
        DiffFormat.write(try Inspector.diff(a, b, by: by, pprof: pprof, follow: follow), limit: limit, json: json)
    }
}

extension SnapshotDiff.Key: ExpressibleByArgument {}
