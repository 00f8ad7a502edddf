import Analysis
import ArgumentParser
import Glibc
import Inspect
import Output

struct Leaks: ParsableCommand {
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
        """)
    @OptionGroup var target: TargetOptions
    @Option(help: "Also list groups of this class: reachable (still_reachable) or possible (possibly_lost is listed anyway).")
    var show: String?
    @Flag(help: "Do not count writable anonymous memory outside malloc (custom pools, mmaps) as roots.")
    var noAnonymousRoots = false
    @Option(help: "List at most this many groups.") var limit = 20
    @Flag(help: "Do not label chunks with types (skips reading debug info).") var noTypes = false

    func validate() throws {
        if let s = show, s != "reachable" && s != "possible" { throw ValidationError("--show takes 'reachable' or 'possible'") }
        if limit < 0 { throw ValidationError("--limit must be >= 0") }
    }

    func run() throws {
        let anonymous = !noAnonymousRoots, types = !noTypes, reachable = show == "reachable"
        let r: LeakInspection
        if target.snapshotPath != nil {
            r = Inspector.leaks(snapshot: try target.loadSnapshot())
        } else {
            r = try target.attach { t, o throws(InspectError) in try Inspector.leaks(t, options: o, anonymousRoots: anonymous, types: types,
                                                                                 typesOfReachable: reachable) }
        }
        var classes: Set<LeakClass> = [.definitelyLost, .indirectlyLost, .possiblyLost]
        if show == "reachable" { classes.insert(.stillReachable) }
        let groups = LeakGroups.build(r, classes: classes)
        var out = OutputBuffer()
        if target.json { LeakFormat.json(r, groups: Array(groups.prefix(limit)), into: &out) }
        else { LeakFormat.text(r, groups: Array(groups.prefix(limit)), total: groups.count, into: &out) }
        out.flush()
        try finish(r.heap)
    }
}

struct Why: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The shortest chain of references from a root to the chunk holding ADDR, or why there is none.",
        discussion: """
        Roots as in `leaks`. Each hop is a word holding a pointer to the next chunk (to its start, \
        or inside it: an interior pointer). A chunk that no chain reaches is lost; for an \
        indirectly lost one the chain from the definitely lost chunk it hangs off is shown.
        """)
    @OptionGroup var target: TargetOptions
    @Argument(help: "An address inside an outstanding chunk (hex, with or without 0x).") var address: String
    @Flag(help: "Do not count writable anonymous memory outside malloc as roots.") var noAnonymousRoots = false

    func run() throws {
        let a = try addressArgument(address)
        if target.snapshotPath != nil { return try fromSnapshot(a) }
        let anonymous = !noAnonymousRoots
        let r = try target.attach { t, o throws(InspectError) in try Inspector.leaks(t, options: o, anonymousRoots: anonymous) }
        let b = r.leaks.blocks
        let k = try outstandingBlock(r, a)
        let cls = r.leaks.leakClass[k]
        var chain = Reachability.shortestChain(to: k, blocks: b, memory: r.memory, roots: r.roots, registers: r.registers)
        var reason: String? = nil
        if chain == nil {
            reason = Why.reason(cls, live: true)
            if cls == .indirectlyLost {
                let heads = (0..<b.count).filter { r.leaks.leakClass[$0] == .definitelyLost }
                chain = Reachability.shortestChain(to: k, blocks: b, memory: r.memory, roots: [], registers: [], from: heads)
            }
        }
        let names = WhyNames(r, chain: chain)
        var out = OutputBuffer()
        if target.json { WhyFormat.json(r, a, k, chain, reason, names, into: &out) } else { WhyFormat.text(r, a, k, chain, reason, names, into: &out) }
        out.flush()
    }
}

extension Why {
    /// From a snapshot: the chunk's class and the typed path that reached it (root variable, then
    /// the chunks whose pointers led to it), as recorded; word offsets are not kept.
    func fromSnapshot(_ a: UInt64) throws {
        let s = try target.loadSnapshot()
        let r = Inspector.leaks(snapshot: s)
        let b = r.leaks.blocks, t = r.types!
        let k = try outstandingBlock(r, a)
        var path: [Int] = [k]
        while let p = path.last.map({ Int(t.labels.parent[$0]) }), p >= 0, path.count <= b.count { path.append(p) }
        let owner = t.owner(path.last!)
        let g = t.groups()
        func item(_ j: Int) -> (chunk: String, size: UInt64, type: String) { (hex(b.start[j]), b.end[j] - b.start[j], g.name(g.of[j])) }
        let cls = r.leaks.leakClass[k]
        var out = OutputBuffer()
        if target.json {
            out.write("{\"address\":\"\(hex(a))\",\"chunk\":\"\(hex(b.start[k]))\",\"size\":\(b.end[k] - b.start[k]),\"class\":\"\(cls.name)\",\"chain\":")
            if let owner {
                let items = ["{\"kind\":\"root\",\"description\":\(jsonString(owner))}"]
                    + path.reversed().dropLast().map { j in let x = item(j); return "{\"kind\":\"chunk\",\"chunk\":\"\(x.chunk)\",\"size\":\(x.size),\"type\":\(jsonString(x.type))}" }
                out.write("[" + items.joined(separator: ",") + "]")
            } else { out.write("null") }
            out.write(",\"reason\":" + (owner == nil ? jsonString(Why.reason(cls, live: false)) : "null") + ",\"from_snapshot\":true}\n")
        } else {
            out.write("\(hex(a)) is in chunk \(hex(b.start[k])) (\(b.end[k] - b.start[k]) bytes, \(g.name(g.of[k]))), \(cls.words)")
            if let owner {
                out.write("\n  \(owner) (typed root, as the snapshot recorded; offsets are not kept)\n")
                for j in path.reversed().dropLast() { let x = item(j); out.write("  -> chunk \(x.chunk) (\(x.size) bytes, \(x.type))\n") }
                out.write("  -> chunk \(hex(b.start[k])) (\(b.end[k] - b.start[k]) bytes)\n")
            } else { out.write(": \(Why.reason(cls, live: false))\n") }
        }
        out.flush()
    }

    /// Why no chain from a root was found for a chunk of class `c`.
    static func reason(_ c: LeakClass, live: Bool) -> String {
        switch c {
        case .definitelyLost: return "nothing points to it from a root or a reachable chunk"
        case .indirectlyLost: return "no root reaches it; it hangs off a definitely lost chunk"
        default: return live ? "no chain found" : "the snapshot keeps only typed paths, and no typed root reached it (run why on the live process)"
        }
    }

    /// The outstanding block holding `a`, or exit 1 saying what `a` is instead.
    func outstandingBlock(_ r: LeakInspection, _ a: UInt64) throws -> Int {
        if let k = r.leaks.blocks.block(containing: a) { return k }
        let t = r.heap.chunks
        let why = t.index(containing: a).map { "is in a \(t.kindName($0)) chunk at \(hex(t.address[$0])), not an outstanding one" }
            ?? "is not in the heap (no chunk holds it)"
        FileHandleErr.write("heapscope: \(hex(a)) \(why)\n"); throw ExitCode(ExitStatus.otherError.rawValue)
    }
}

