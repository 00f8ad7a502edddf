import ArgumentParser
import Inspect
import Output

struct Leaks: ParsableCommand, TargetCommand {
    static let configuration = CommandConfiguration(
        abstract: "Outstanding chunks nothing can reach any more, classified as Valgrind memcheck does.",
        discussion: """
        Stops the target once (the pause is printed) to copy its heap and every other writable \
        mapping, detaches, and scans conservatively from the roots: every thread's registers and \
        stack (from the stack pointer less the red zone), static TLS, the writable data of every \
        module, and other writable anonymous memory malloc does not own (--no-anonymous-roots \
        leaves those out). malloc's own metadata is never a root.

        Classes: still_reachable (a chain of pointers to chunk starts leads to it from a root), \
        possibly_lost (only chains through interior pointers do), definitely_lost (nothing \
        points to it from roots or reachable chunks), indirectly_lost (only lost chunks point \
        to it). Groups: lost chunks of one size and type (as `heapscope types` labels them) whose \
        words point to the same symbols.
        """ + Examples.leaks)
    @OptionGroup var target: TargetOptions
    @Option(help: "Also list groups of this class: reachable (still_reachable) or possible (possibly_lost is listed anyway).")
    var show: String?
    @Flag(help: "Do not count writable anonymous memory outside malloc (custom pools, mmaps) as roots.")
    var noAnonymousRoots = false
    @Option(help: "List at most this many groups.") var limit = 20
    @Flag(help: "Do not label chunks with types (skips reading debug info).") var noTypes = false
    @Flag(help: "List every chunk of each group (its user address), not only the first three.") var addresses = false

    func validate() throws {
        if let s = show, s != "reachable" && s != "possible" { throw ValidationError("--show takes 'reachable' or 'possible'") }
        if limit < 0 { throw ValidationError("--limit must be >= 0") }
    }

    func run() throws {
        let anonymous = !noAnonymousRoots, types = !noTypes, reachable = show == "reachable"
        let r = try target.attach { t, o in try Inspector.leaks(t, options: o, anonymousRoots: anonymous, types: types, typesOfReachable: reachable, typeOwners: false) }
        let groups = LeakGroups.build(r, reachable: reachable, addresses: addresses)
        if target.json { var j = JSONWriter(); LeakFormat.json(r, groups: Array(groups.prefix(limit)), into: &j); j.flush() }
        else { var out = OutputBuffer(); LeakFormat.text(r, groups: Array(groups.prefix(limit)), total: groups.count, into: &out); out.flush() }
        try finish(r.heap)
    }
}

struct Why: ParsableCommand, TargetCommand {
    static let configuration = CommandConfiguration(
        abstract: "The shortest chain of references from a root to the chunk holding ADDR, or why there is none.",
        discussion: """
        Roots as in `leaks`. Each hop is a word holding a pointer to the next chunk (to its start, \
        or inside it: an interior pointer). A chunk that no chain reaches is lost; for an \
        indirectly lost one the chain from the definitely lost chunk it hangs off is shown.
        """ + Examples.why)
    @OptionGroup var target: TargetOptions
    @Argument(help: "An address inside an outstanding chunk (hex, with or without 0x).") var address: String
    @Flag(help: "Do not count writable anonymous memory outside malloc as roots.") var noAnonymousRoots = false

    func run() throws {
        let a = try addressArgument(address), anonymous = !noAnonymousRoots
        let w = try target.attach { t, o in try Inspector.why(t, address: a, options: o, anonymousRoots: anonymous) }
        if target.json { var j = JSONWriter(); WhyFormat.json(w, into: &j); j.flush() }
        else { var out = OutputBuffer(); WhyFormat.text(w, into: &out); out.flush() }
    }
}
