import ArgumentParser
import Glibc
import Inspect
import Output

struct Types: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Outstanding chunks by type: count, bytes, share, how the type is known, and who owns them.",
        discussion: """
        Types come from the program's debug info and the chunks' contents. declared: reached \
        through a typed pointer from a global, a TLS variable (of the executable or a library loaded with it), or a local or \
        parameter of any frame of any thread (stacks are unwound from the copy), following \
        pointer members, arrays and unions (a chunk reached only through a union member is \
        marked "via union"). vtable: a C++ object whose first word points into "vtable for X". \
        heuristic: a NUL-terminated printable string (char[]). The rest is unknown. Owners are \
        the root variables the chunks were first reached from.
        """)
    @OptionGroup var target: TargetOptions
    @Option(help: "Only chunks of this kind or state (those of chunks --state that hold outstanding chunks).") var state: String?
    @Option(help: "Show this many owners per type.") var owners = 3

    func validate() throws {
        if let s = state, !Inspector.chunkStateNames.contains(s) {
            throw ValidationError("unknown state '\(s)'; one of: \(Inspector.chunkStateNames.joined(separator: ", "))")
        }
    }

    func run() throws {
        let r = try target.types()
        let table = r.heap.chunks
        let want = state.flatMap { table.filter(named: $0) }, chunk = r.blocks.chunk
        let rows = r.histogram(topOwners: max(owners, 0)) { k in want.map { $0(Int(chunk[k])) } ?? true }
        let total = rows.reduce(UInt64(0)) { $0 + $1.bytes }
        var out = OutputBuffer()
        if target.json {
            out.write("{\"pid\":\(r.heap.pid),\"pause_us\":\(r.heap.pauseMicroseconds),\"debug_info_us\":\(r.debugInfoMicroseconds),\"propagation_us\":\(r.propagationMicroseconds),\"rounds\":\(r.labels.rounds),\"bytes\":\(total),\"conflicts\":\(r.labels.conflicts)" + copyJSON(r.heap) + ",\"types\":[")
            for (n, row) in rows.enumerated() {
                out.write((n > 0 ? "," : "") + "{\"type\":\(jsonString(row.type)),\"confidence\":\"\(row.confidence.name)\",\"ambiguous\":\(row.ambiguous),\"chunks\":\(row.chunks),\"bytes\":\(row.bytes),\"owners\":[")
                out.write(row.owners.map { "{\"root\":\(jsonString($0.name)),\"chunks\":\($0.chunks)}" }.joined(separator: ","))
                out.write("]}")
            }
            out.write("]}\n")
        } else {
            let typed = rows.filter { $0.confidence != .unknown }.reduce(0) { $0 + $1.chunks }
            out.write("pid \(r.heap.pid): \(pausedText(r.heap)); \(human(total)) outstanding in \(rows.reduce(0) { $0 + $1.chunks }) chunks, \(typed) typed")
            out.write(r.labels.conflicts > 0 ? " (\(r.labels.conflicts) reached with conflicting types)\n" : "\n")
            if let c = copyText(r.heap) { out.write(c + "\n") }
            out.write("\(pad("chunks", 10)) \(pad("bytes", 12))  share  confidence  type\n")
            for row in rows {
                let share = total > 0 ? Double(row.bytes) * 100 / Double(total) : 0
                out.write("\(pad(String(row.chunks), 10)) \(pad(String(row.bytes), 12)) \(pad(format1(share) + "%", 6))  \(pad(row.confidence.name, 10, left: true))  \(row.type)\(row.ambiguous ? " (via union)" : "")\n")
                for o in row.owners { out.write("\(String(repeating: " ", count: 44))\(pad(String(o.chunks), 8)) from \(o.name)\n") }
            }
        }
        out.flush()
        try finish(r.heap, say: true)
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One chunk: header, state, type, its fields decoded by name (pointers to chunks and symbols), a hex dump.",
        discussion: """
        A chunk of a known type is decoded field by field from its DWARF layout (an array \
        element by element); pointers say what they point to: a symbol, or chunk X with its type. \
        A chunk of unknown type lists the words that point to symbols or chunks. Then a hex dump.
        """)
    @OptionGroup var target: TargetOptions
    @Argument(help: "An address inside the chunk (hex, with or without 0x).") var address: String
    @Option(help: "Show at most this many bytes of the chunk.") var bytes = 256

    func run() throws {
        let a = try addressArgument(address)
        let live = target.snapshotPath == nil
        let r = try target.types()
        if !live && r.memory.regions.isEmpty {
            FileHandleErr.write("heapscope: \(target.target) holds no chunk contents (take it with heapscope snapshot --contents)\n"); throw ExitCode(ExitStatus.otherError.rawValue)
        }
        var out = OutputBuffer()
        if let problem = ShowFormat.write(r, address: a, bytes: bytes, json: target.json, into: &out) {
            FileHandleErr.write("heapscope: \(problem)\n"); throw ExitCode(ExitStatus.otherError.rawValue)
        }
        out.flush()
    }
}
