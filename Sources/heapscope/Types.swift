import ArgumentParser
import Inspect
import Output

struct Types: ParsableCommand, TargetCommand {
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
        """ + Examples.types)
    @OptionGroup var target: TargetOptions
    @Option(help: "Only chunks of this kind or state (those of chunks --state that hold outstanding chunks).") var state: String?
    @Option(help: "Show this many owners per type.") var owners = 3

    func validate() throws {
        if let s = state, !Inspector.chunkStateNames.contains(s) {
            throw ValidationError("unknown state '\(s)'; one of: \(Inspector.chunkStateNames.joined(separator: ", "))")
        }
    }

    func run() throws {
        let r = try target.attach { t, o in try Inspector.types(t, options: o) }
        var out = OutputBuffer()
        TypesFormat.write(r, state: state, owners: owners, json: target.json, into: &out)
        out.flush()
        try finish(r.heap, say: true)
    }
}

struct Show: ParsableCommand, TargetCommand {
    static let configuration = CommandConfiguration(
        abstract: "One chunk: header, state, type, its fields decoded by name (pointers to chunks and symbols), a hex dump.",
        discussion: """
        A chunk of a known type is decoded field by field from its DWARF layout (an array \
        element by element); pointers say what they point to: a symbol, or chunk X with its type. \
        A chunk of unknown type lists the words that point to symbols or chunks. Then a hex dump.
        """ + Examples.show)
    @OptionGroup var target: TargetOptions
    @Argument(help: "An address inside the chunk (hex, with or without 0x).") var address: String
    @Option(help: "Show at most this many bytes of the chunk.") var bytes = 256

    func run() throws {
        let a = try addressArgument(address)
        let r = try target.attach { t, o in try Inspector.types(t, options: o) }
        var out = OutputBuffer()
        try ShowFormat.write(r, address: a, bytes: bytes, json: target.json, name: target.target, into: &out)
        out.flush()
    }
}
